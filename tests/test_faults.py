"""Faults (issue 38): SIGKILL in the denoiser stage, then the same command again, ends with the
weights of an uninterrupted run; a full disk (a write raising ENOSPC) while writing a checkpoint
or a set is a one-line error that leaves the previous checkpoint or set as it was.

Why the weights are equal (CPU): everything random in a training step is a
function of (seed, step) (training_loop), a checkpoint holds the model, the optimiser state
and the EMA exactly (safetensors), and the denoiser's initialisation is seeded by the run's
seed; so the steps computed after a resume are the same computation as in an uninterrupted
run. The uninterrupted run compared with is the same denoiser stage in a fresh process, from
the same copy of the run: a denoiser trained in the process that has just trained the
autoencoder (`gendd train` from scratch) differs from it in the last bits (max |difference|
about 3e-5 after the 30 `tiny` steps) with no kill at all, from the same latents and seed (not
traced further; CPU kernels whose rounding depends on the process's memory layout would do
it), so that comparison would test the process's history, not the resume.
The same holds within one test run: after tests/test_cli.py (which only adds a set to the
shared run) the resumed weights differ from the reference's by 4.5e-6 in fp32, and by 2.9e-3
under the bf16 autocast `auto` picks on an AVX-512-BF16 CPU, where rounding to bf16 turns those
last bits into different steps (Adam normalises the tiny gradients). So the stage runs in fp32
(FP32) and the test allows TOLERANCE: a tenth of what one Adam step at the `tiny` denoiser's
learning rate (1e-3) moves a weight, so a resume that loses or alters a step still fails it.

The other stages are killed the way benchmarks/fault_suite.py kills them (its functions run
here): a real SIGKILL at a point drawn from a generator seeded by SEED, while the stage's
progress bar runs (after update K, a fraction of a step later), then the same command again.
The autoencoder and the denoiser resume from their checkpoints; the real-data classifier,
sampling, refinement and evaluation have none and start over. Each must finish, leave no file
under a final name that does not read whole and no hidden temporary file, and end with exactly
an uninterrupted run's output. To stay quick, the commands run eagerly (GENDD_COMPILE=0) and
under glibc's malloc, and only the killed ones in processes of their own; the benchmark runs
every command in its own process, compiled, under tcmalloc, with more kill points."""

import errno
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from data_writers import data_env  # noqa: F401
from safetensors.torch import load_file

from gendd import set_writer
from gendd.checkpoint import read_checkpoint
from gendd.cli import main
from gendd.config import with_overrides
from gendd.errors import GenddError
from gendd.run_dir import read_config
from gendd.set_writer import StreamingSetWriter
from gendd.sets import DistilledSet, load_set, save_set
from gendd.utils.atomic import atomic_folder, write_json, write_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fault_suite import STAGES, KillPoint, References, kill_and_rerun, kill_point  # noqa: E402

DENOISER = "denoiser/diffusion_pytorch_model.safetensors"
TOLERANCE = 1e-4  # max |difference| of any resumed weight (see the module docstring)
FP32 = ("train.mixed_precision", "no")  # see the module docstring


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def before_denoiser(tiny_run, tmp_path):
    """A copy of the `tiny` run as it was when its denoiser stage began."""
    def copy(name="run"):
        run = tmp_path / name
        shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock", "summary.json"))
        shutil.rmtree(run / "denoiser")
        shutil.rmtree(run / "checkpoints" / "denoiser")
        write_text(run / "config.yaml", with_overrides(read_config(run), dict([FP32])).to_yaml())
        return run
    return copy


def train_command(small_fashion, run):
    return [sys.executable, "-m", "gendd.cli", "train", "--dataset", "fashion-mnist",
            "--data-root", str(small_fashion), "--preset", "tiny", "--out", str(run)]


def newest_step(ckpts) -> int:
    return max(int(p.name.split("_")[1]) for p in ckpts.glob("step_*"))


@pytest.mark.slow
def test_sigkill_in_the_denoiser_stage_resumes_to_the_uninterrupted_weights(
        before_denoiser, small_fashion):
    reference, run = before_denoiser("reference"), before_denoiser("killed")
    in_fp32 = ["--set", "=".join(FP32)]
    subprocess.run([*train_command(small_fashion, reference), *in_fp32], capture_output=True,
                   check=True, timeout=600)
    cmd = [*train_command(small_fashion, run), *in_fp32]
    ckpts = run / "checkpoints" / "denoiser"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpts / "step_00000010").is_dir():
        time.sleep(0.05)
    time.sleep(0.5)  # a little past the checkpoint, in the middle of a step
    proc.kill()
    assert proc.wait() == -9, "the run ended before it could be killed"
    done = newest_step(ckpts)
    assert done in (10, 20) and not (run / "denoiser").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert re.search(rf"denoiser:\s+\d+%\|[^|]*\| {done}/30 ", again.stderr)  # lost < 10 steps
    assert not [p for p in run.rglob("*") if p.name.startswith(".") and p.name != ".lock"]
    for name in (DENOISER, *(f"checkpoints/denoiser/step_00000030/{part}.safetensors"
                             for part in ("model", "optimizer", "ema"))):
        got, want = load_file(str(run / name)), load_file(str(reference / name))
        assert got.keys() == want.keys()
        assert max(float((got[k] - want[k]).abs().max()) for k in want) <= TOLERANCE, name


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one(small_fashion, tmp_path, monkeypatch):
    import gendd.checkpoint

    real_save = gendd.checkpoint.save_file
    monkeypatch.setattr(gendd.checkpoint, "save_file", lambda tensors, path: (
        full_disk() if "step_00000010" in path else real_save(tensors, path)))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, [*train_command(small_fashion, run)[3:], "--set",
                                       "train.checkpoint_every=5"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.endswith(
        f"\ngendd: error: cannot write checkpoint {run}/checkpoints/autoencoder/step_00000010 "
        "(No space left on device); the previous checkpoints are kept\n")
    ckpts = run / "checkpoints" / "autoencoder"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000005"]
    parts, meta = read_checkpoint(ckpts / "step_00000005")
    assert meta["step"] == 5 and set(parts) == {"model", "optimizer"}


def test_a_full_disk_while_saving_a_set_keeps_the_old_set(tmp_path, monkeypatch):
    import gendd.sets

    path = tmp_path / "s.safetensors"
    old = DistilledSet(torch.ones(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), {"v": 1})
    save_set(path, old)
    monkeypatch.setattr(gendd.sets, "save_file", full_disk)
    with pytest.raises(GenddError, match=re.escape(
            f"cannot write {path} (No space left on device); the file there is kept")):
        save_set(path, DistilledSet(torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                                    torch.tensor([0, 1]), {"v": 2}))
    assert load_set(path).metadata == {"v": 1} and torch.equal(load_set(path).images, old.images)
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]


class _FullDiskFile(io.FileIO):
    def write(self, data):
        full_disk()


def test_a_full_disk_while_assembling_a_streamed_set_leaves_no_spool(tmp_path, monkeypatch):
    w = StreamingSetWriter(tmp_path / "s.safetensors", 2, (1, 8, 8))
    for c in (0, 1):
        w.add(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), c)
    monkeypatch.setattr(set_writer, "open", lambda p, mode="r": _FullDiskFile(p, mode),
                        raising=False)
    path = re.escape(str(tmp_path / "s.safetensors"))
    with pytest.raises(GenddError, match=rf"^cannot write {path} \(No space left on device\)$"):
        w.close({})
    assert list(tmp_path.iterdir()) == []


# --- SIGKILL in every other stage, then the same command again --------------------------------

SEED = 38  # seeds the kill points: the same points on every run


@pytest.fixture(scope="module", autouse=True)
def quick_processes():
    """No compiling, no re-execution under tcmalloc: each costs a process more time than these
    stages take (both give the same results bit for bit; the benchmark runs both)."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("GENDD_COMPILE", "0")
        m.setenv("GENDD_MALLOC", "system")
        yield


def in_this_process(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def references(tiny_run, small_fashion, tmp_path_factory):
    """Uninterrupted runs of the stages' commands, made once. The autoencoder's is the `tiny`
    run itself: its autoencoder stage is the command's (what the command sets differently, the
    denoiser's steps and the classifier, comes after that stage)."""
    refs = References(tiny_run, small_fashion, tmp_path_factory.mktemp("references"),
                      in_this_process)
    refs.folders["autoencoder"] = tmp_path_factory.mktemp("autoencoder-reference")
    (refs.folders["autoencoder"] / "run").symlink_to(tiny_run)
    return refs


def killed_and_rerun(name, references, tmp_path, point=None):
    """Kill stage `name`'s command (in a process of its own) at its seeded point, or at
    `point`; run it again; check that it finished whole and as an uninterrupted run. The
    command run again, and the uninterrupted runs, run in this process: the same outputs, bit
    for bit, as in processes of their own (benchmarks/fault_suite.py runs them so), without
    the seconds each process spends importing."""
    stage = STAGES[name]
    c = kill_and_rerun(stage, tmp_path / "killed", references,
                       point or kill_point(SEED, stage, 0), rerun=in_this_process)
    assert c.killed, f"{name}: the command ended before it was killed ({c.point})"
    assert c.partial_after_kill == []
    assert c.rerun_rc == 0, c.rerun_stderr[-3000:]
    assert c.partial_after_rerun == [] and c.leftovers_after_rerun == []
    assert c.equal, f"{name}: the output differs from an uninterrupted run's (killed {c.point})"
    return c


def resumed_from(output: str, bar: str, total: int) -> int:
    """Where the command run again started its progress bar `bar`: the step it resumed from."""
    return int(re.search(rf"{bar}:\s+\d+%\|[^|]*\| (\d+)/{total} ", output)[1])


@pytest.mark.slow
def test_sigkill_in_the_autoencoder_stage_resumes_to_the_uninterrupted_weights(
        references, tmp_path):
    """Weights, latent statistics (config.json), and the last checkpoint's model and optimiser
    state equal the `tiny` run's, trained without a kill; at most one checkpoint interval (10
    steps) is trained again."""
    c = killed_and_rerun("autoencoder", references, tmp_path)
    after = kill_point(SEED, STAGES["autoencoder"], 0).after  # killed after this step, + < 2
    assert after - 10 <= resumed_from(c.rerun_stderr, "autoencoder", 30) <= after + 1


@pytest.mark.slow
def test_sigkill_while_the_real_data_classifier_trains(references, tmp_path):
    """The classifier has no checkpoints: the same command trains it again from its seed, to
    the same weights (and the same info.json) as an uninterrupted run's."""
    killed_and_rerun("classifier", references, tmp_path)


@pytest.mark.slow
def test_sigkill_while_recording_the_real_data_statistics(references, tmp_path):
    """The statistics have no checkpoints: the same command records them again, to the same
    seeds and means as an uninterrupted run's."""
    killed_and_rerun("statistics", references, tmp_path)


@pytest.mark.slow
def test_sigkill_while_sampling_then_the_same_command_writes_the_same_set(references, tmp_path):
    """`generate --refine none`: the set equals the sampled set of an uninterrupted `generate`
    of the same sampler settings (the refinement's reference), images, labels and metadata."""
    killed_and_rerun("sampling", references, tmp_path)


@pytest.mark.slow
def test_sigkill_while_refining_then_the_same_command_writes_the_same_sets(references, tmp_path):
    """Killed in DM: the sampled set is already written (`NAME.sampled.safetensors`); the same
    command again, without --force, samples and refines afresh, to the same two sets."""
    c = killed_and_rerun("refinement", references, tmp_path)
    assert c.files_after_kill.count("run/distilled/ipc1.sampled.safetensors") == 1
    assert "run/distilled/ipc1.safetensors" not in c.files_after_kill


@pytest.mark.slow
def test_sigkill_while_evaluating_then_the_same_command_writes_the_same_result(
        references, tmp_path):
    """`evaluate --json-out`: the JSON equals an uninterrupted run's but for its wall time."""
    killed_and_rerun("evaluation", references, tmp_path)


@pytest.mark.slow
def test_a_kill_just_before_a_rename_leaves_a_hidden_folder_that_the_rerun_removes(
        references, tmp_path):
    """The result is whole in its temporary file, not yet renamed: the kill leaves its hidden
    temporary folder; the same command again removes it (a dead process's) and writes the same
    result."""
    c = killed_and_rerun("evaluation", references, tmp_path, KillPoint(before_replace="/r.json"))
    assert len(c.leftovers_after_kill) == 1
    assert re.fullmatch(r"eval/\.gendd-tmp-\d+-\w+", c.leftovers_after_kill[0])
    assert "eval/r.json" not in c.files_after_kill


def test_an_atomic_write_removes_the_temporary_folders_no_writer_holds(tmp_path):
    """A killed writer's folder is held by nobody (the kernel drops a flock when its holder
    dies): removed, with what safetensors left in it; one whose writer runs (holds its lock)
    stays, and so does what is not gendd's."""
    import fcntl

    names = [".gendd-tmp-1-dead", ".gendd-tmp-2-alive", ".tmpAbC123"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / ".tmpAbC123").write_text("{")  # as safetensors leaves them
    held = os.open(tmp_path / names[1], os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a writer still at work holds it
    try:
        write_json(tmp_path / "x.json", {"ok": 1})
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.json", *names[1:]])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_give_files_the_permissions_of_any_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "x.json", {})
        save_set(tmp_path / "s.safetensors", DistilledSet(
            torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.tensor([0]), {}))
    finally:
        os.umask(old)
    for name in ("x.json", "s.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_an_atomic_folder_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    """A model's folder (autoencoder, denoiser) appears whole or not at all: a writer that fails
    half-way leaves the old folder as it was and no temporary one."""
    target = tmp_path / "denoiser"
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("1")
        assert not target.exists()
    with pytest.raises(OSError), atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("2")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["denoiser"]
    assert (target / "config.json").read_text() == "1"
    with atomic_folder(target) as tmp:
        (tmp / "weights").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]
    assert [p.name for p in tmp_path.iterdir()] == ["denoiser"]

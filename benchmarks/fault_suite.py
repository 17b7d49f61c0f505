"""Issue 38's fault suite, the slow part: kill -9 at seeded random points of every stage of a
`tiny` run (autoencoder, real-data classifier, denoiser, real-data statistics, sampling,
refinement, evaluation), then the same command again, N times per stage; a table of what
happened.

A stage is killed while its progress bar runs: after update K of the bar (K drawn in 1 .. one
before the last) plus a fraction U of the time the update before took, so at any point of a
step, also inside a write; where the bar ends first, at its end. K and U come from a generator
seeded by (--seed, stage, cycle): the same command draws the same points. The kill is a real
SIGKILL of the gendd process, sent by a timer thread that `--child` mode starts inside it (the
command is otherwise `python -m gendd.cli ...`), so that it lands in the stage named and not
in interpreter start-up, whatever the load of the machine. Besides the N kills, each stage's
command is killed once just before its last atomic rename (a whole temporary file left
behind), and the denoiser's once just before its final weights are written (EXTRA_POINTS).

After each kill: no file under a final name is partial (every .safetensors, .json, .jsonl and
.yaml below the command's folder reads: "partial files found", counted after the kill and
after the rerun); the same command again, in a process of its own, finishes (exit 0: "resumes
completed"), leaves no hidden temporary file or folder ("temporaries left"), and its outputs
equal those of an uninterrupted run, bit for bit (CPU, seed 0; sets in images, labels and
metadata, weights in every tensor, JSON in every value; wall times aside).

    python benchmarks/fault_suite.py --kills 2
    python benchmarks/fault_suite.py --kills 5 --stages sampling refinement --seed 1 --keep work

Every command runs as a user runs it: compiled where gendd compiles, under tcmalloc where the
system has it. tests/test_faults.py runs one cycle of each stage through these same functions
(the denoiser's has a test of its own there). The table ends with counts of the test suite's
bad-input probes (the cases pytest collects from tests/test_hostile_files.py and the error
tests of tests/test_cli.py and tests/test_config.py) and concurrency tests
(tests/test_run_lock.py), without running them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = {"generation_wall_time_s", "images_per_s", "wall_time_s"}  # differ from run to run
TIMEOUT = 900


# ----- the kill switch, installed in the gendd process by --child -----------------------------

@dataclass
class KillPoint:
    """Where a command is killed: `fraction` of an update's time after update `after` of the
    progress bar `bar` (or at the bar's end, if it ends first); or just before the first
    os.replace onto a path ending `before_replace` (a finished temporary file, not yet renamed);
    or just before safetensors writes a file ending `before_save`."""
    bar: str | None = None
    after: int = 1
    fraction: float = 0.0
    before_replace: str | None = None
    before_save: str | None = None

    def __str__(self) -> str:
        if self.before_replace:
            return f"before renaming *{self.before_replace}"
        if self.before_save:
            return f"before saving *{self.before_save}"
        return f"at {self.bar} update {self.after} + {self.fraction:.2f} step"


def install_kill_switch(point: KillPoint) -> None:
    """SIGKILL this process at `point`."""
    def kill(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    if point.before_replace:
        replace = os.replace
        os.replace = lambda src, dst, **kw: (
            kill() if str(dst).endswith(point.before_replace) else replace(src, dst, **kw))
    elif point.before_save:
        import safetensors.torch

        save = safetensors.torch.save_file
        safetensors.torch.save_file = lambda tensors, filename, *a, **kw: (
            kill() if str(filename).endswith(point.before_save) else
            save(tensors, filename, *a, **kw))
    else:
        _kill_in_bar(point, kill)


def _kill_in_bar(point: KillPoint, kill: Callable[[], None]) -> None:
    from tqdm import std

    init, update, iterate, close = (std.tqdm.__init__, std.tqdm.update, std.tqdm.__iter__,
                                    std.tqdm.close)
    armed = []

    def watched(self) -> bool:
        return getattr(self, "_fault_updates", None) is not None

    def tick(self):  # one more update of a bar
        if watched(self) and not armed:
            now = time.perf_counter()
            self._fault_updates += 1
            if self._fault_updates >= point.after:
                armed.append(threading.Timer(point.fraction * (now - self._fault_t), kill))
                armed[0].daemon = True
                armed[0].start()
            self._fault_t = now

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        desc = kwargs.get("desc", args[1] if len(args) > 1 else None)
        if desc == point.bar and not armed:
            self._fault_updates, self._fault_t = 0, time.perf_counter()

    def patched_update(self, n=1):
        out = update(self, n)
        tick(self)
        return out

    def patched_iter(self):  # `for x in tqdm(...)` counts without calling update
        for x in iterate(self):
            yield x
            tick(self)

    def patched_close(self):
        if watched(self):
            kill()  # the stage's loop has ended before the timer fired
        return close(self)

    std.tqdm.__init__, std.tqdm.update, std.tqdm.__iter__, std.tqdm.close = (
        patched_init, patched_update, patched_iter, patched_close)


def child(argv: list[str]) -> None:
    """`gendd ARGS` with a kill switch: `python -m gendd.cli` (under tcmalloc as it is)."""
    from gendd.utils.malloc import tcmalloc_environment, tcmalloc_library

    env = tcmalloc_environment(os.environ, tcmalloc_library, sys.platform)
    if env is not None:  # as gendd.cli.entry
        os.execve(sys.executable, [sys.executable, __file__, "--child", *argv], env)
    p = argparse.ArgumentParser(prog="fault_suite.py --child")
    p.add_argument("--point", type=json.loads)
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    install_kill_switch(KillPoint(**a.point))
    from gendd.cli import main as gendd_main

    gendd_main([x for x in a.args if x != "--"], prog_name="gendd")


# ----- running and checking ------------------------------------------------------------------

def gendd(args: list[str], **kw) -> subprocess.CompletedProcess:
    """`gendd ARGS` in its own process, to the end."""
    return subprocess.run([sys.executable, "-m", "gendd.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, **kw)


def killed(args: list[str], point: KillPoint) -> subprocess.CompletedProcess:
    """`gendd ARGS` in its own process, killed by SIGKILL at `point`."""
    return subprocess.run([sys.executable, __file__, "--child", "--point",
                           json.dumps(point.__dict__), "--", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT)


def kill_point(seed: int, stage: "Stage", cycle: int) -> KillPoint:
    """A point in the stage's progress bar, after update 1 .. one before the last and a
    fraction of a step, drawn from a generator seeded by (seed, stage, cycle)."""
    rng = random.Random(f"{seed}/{stage.name}/{cycle}")
    return KillPoint(stage.bar, rng.randint(1, stage.updates - 1), rng.random())


def partial_files(root: Path) -> list[str]:
    """Files under a final name (not hidden) below `root` that do not read whole."""
    import yaml
    from safetensors import safe_open

    readers = {".safetensors": lambda p: safe_open(str(p), "pt").keys(),
               ".json": lambda p: json.loads(p.read_text()),
               ".jsonl": lambda p: [json.loads(line) for line in p.read_text().splitlines()],
               ".yaml": lambda p: yaml.safe_load(p.read_text())}
    bad = []
    for p in sorted(root.rglob("*")):
        if p.suffix in readers and p.is_file() and not hidden(p, root):
            try:
                readers[p.suffix](p)
            except Exception as e:  # noqa: BLE001 -- any failure to read is the finding
                bad.append(f"{p.relative_to(root)} ({type(e).__name__})")
    return bad


def hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def leftovers(root: Path) -> list[str]:
    """Hidden files and folders below `root` (temporary files, spools), the run lock aside."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name != ".lock")


def same_outputs(work: Path, output: str, ref: Path, ref_output: str) -> bool:
    """`work / output` is the same as `ref / ref_output`: set files in images, labels and
    metadata, weights in every tensor, JSON files in every value; wall times, and the folders'
    own names in paths, aside."""
    a, b = work / output, ref / ref_output
    if not (a.is_file() and b.is_file()):
        return False
    if a.suffix == ".safetensors":
        from safetensors.torch import load_file

        ta, tb = load_file(str(a)), load_file(str(b))
        if ta.keys() != tb.keys() or not all(ta[k].equal(tb[k]) for k in ta):
            return False
        a_meta, b_meta = _set_metadata(a), _set_metadata(b)
    else:
        a_meta, b_meta = json.loads(a.read_text()), json.loads(b.read_text())
    return comparable(a_meta, work) == comparable(b_meta, ref)


def _set_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def comparable(obj, root: Path):
    """`obj` without wall times, with `root` in its paths written ROOT."""
    if isinstance(obj, str) and obj.startswith("{"):
        try:
            return comparable(json.loads(obj), root)  # a set's metadata, JSON in a string
        except ValueError:
            pass
    if isinstance(obj, str):
        return obj.replace(str(root), "ROOT")
    if isinstance(obj, dict):
        return {k: comparable(v, root) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [comparable(v, root) for v in obj]
    return obj


# ----- the stages ----------------------------------------------------------------------------

@dataclass
class Stage:
    """A command killed in one stage: `prepare(base, data, work)` sets `work` up from a
    finished `tiny` run `base` as it was when the stage began and returns the command's
    arguments; `outputs` (below `work`) are compared with an uninterrupted run's: of this
    stage's command, or of stage `reference`'s, whose `reference_outputs` they are then."""
    name: str
    bar: str  # the stage's progress bar
    updates: int  # how many times it is updated
    prepare: Callable[[Path, Path, Path], list[str]]
    outputs: tuple[str, ...]
    reference: str | None = None
    reference_outputs: tuple[str, ...] | None = None


def train_args(data: Path, run: Path, *overrides: str) -> list[str]:
    return ["train", "--dataset", "fashion-mnist", "--data-root", data, "--preset", "tiny",
            "--out", run, *settings(overrides)]


def settings(overrides) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def copy_run(base: Path, run: Path, *drop: str) -> None:
    # The base run's model only: what other commands made in it is no part of a stage's start.
    shutil.copytree(base, run, ignore=shutil.ignore_patterns(".lock", "summary.json", "distilled",
                                                             "eval", "report"))
    for name in drop:
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


# The autoencoder's and the classifier's commands train one denoiser step only, the
# autoencoder's without the classifier: the rest of the run is not what is compared, and so
# costs little.
AUTOENCODER = ("denoiser.steps=1", "train.fd_every=0")
CLASSIFIER = ("denoiser.steps=1", "train.classifier_epochs=3", "train.fd_samples=10")  # 4 passes
IPC = 1
SAMPLING = ("sampler.batch_size=2",)  # two classes per batch at 1 per class: 5 updates
REFINEMENT = (*SAMPLING, "refine.iterations=7")  # sampled as SAMPLING samples
EVAL_EPOCHS = 7
SET = f"run/distilled/ipc{IPC}.safetensors"


def prepare_denoiser(base: Path, data: Path, work: Path) -> list[str]:
    """The base run as it was when its denoiser stage began (as tests/test_faults.py's)."""
    copy_run(base, work / "run", "denoiser", "checkpoints/denoiser")
    return train_args(data, work / "run")


def prepare_statistics(base: Path, data: Path, work: Path) -> list[str]:
    """The base run as it was when its real-data statistics began."""
    copy_run(base, work / "run", "statistics.safetensors")
    return train_args(data, work / "run")


def prepare_autoencoder(base: Path, data: Path, work: Path) -> list[str]:
    return train_args(data, work / "run", *AUTOENCODER)


def prepare_classifier(base: Path, data: Path, work: Path) -> list[str]:
    """The base run with its autoencoder only, its configuration made the command's."""
    from gendd.config import parse_override, resolve_config

    run = work / "run"
    copy_run(base, run, "classifier", "denoiser", "checkpoints/denoiser")
    cfg = resolve_config("fashion-mnist", "tiny", 0, dict(map(parse_override, CLASSIFIER)))
    (run / "config.yaml").write_text(cfg.to_yaml())
    return train_args(data, run, *CLASSIFIER)


def generate_args(data: Path, run: Path, *extra: str) -> list[str]:
    return ["generate", run, "--ipc", IPC, "--data-root", data, *extra]


def prepare_sampling(base: Path, data: Path, work: Path) -> list[str]:
    copy_run(base, work / "run")
    return generate_args(data, work / "run", "--refine", "none", *settings(SAMPLING))


def prepare_refinement(base: Path, data: Path, work: Path) -> list[str]:
    copy_run(base, work / "run")
    return generate_args(data, work / "run", *settings(REFINEMENT))


def prepare_evaluation(base: Path, data: Path, work: Path) -> list[str]:
    """Two real training images of each class, as a set file."""
    from gendd.baselines import random_real
    from gendd.data import load_dataset
    from gendd.sets import save_set

    save_set(work / "set.safetensors", random_real(load_dataset("fashion-mnist", data), 2, 0))
    return ["evaluate", work / "set.safetensors", "--dataset", "fashion-mnist", "--data-root",
            data, "--epochs", EVAL_EPOCHS, "--rounds", 1, "--json-out", work / "eval" / "r.json"]


STAGES = {s.name: s for s in (
    Stage("autoencoder", "autoencoder", 30, prepare_autoencoder,
          ("run/autoencoder/diffusion_pytorch_model.safetensors", "run/autoencoder/config.json",
           *(f"run/checkpoints/autoencoder/step_00000030/{p}.safetensors"
             for p in ("model", "optimizer")))),
    Stage("classifier", "train", 4, prepare_classifier,
          ("run/classifier/model.safetensors", "run/classifier/info.json")),
    Stage("denoiser", "denoiser", 30, prepare_denoiser,
          ("run/denoiser/diffusion_pytorch_model.safetensors",
           *(f"run/checkpoints/denoiser/step_00000030/{p}.safetensors"
             for p in ("model", "optimizer", "ema")))),
    Stage("statistics", "statistics", 3, prepare_statistics, ("run/statistics.safetensors",)),
    Stage("sampling", "generate", 5, prepare_sampling, (SET,),
          "refinement", (SET.replace(".safetensors", ".sampled.safetensors"),)),
    Stage("refinement", "DM", 8, prepare_refinement,
          (SET, SET.replace(".safetensors", ".sampled.safetensors"))),
    Stage("evaluation", "train", EVAL_EPOCHS + 1, prepare_evaluation, ("eval/r.json",)),
)}

# Kill points other than the progress bars' (the benchmark's extra rows): just before each
# command's last atomic rename, which leaves a whole temporary file that the command run again
# must remove; and where a stage's final weights are being saved.
EXTRA_POINTS = {
    "autoencoder": {"before its last rename": KillPoint(before_replace="/generator.json")},
    "classifier": {"before its last rename": KillPoint(
        before_replace="/classifier/model.safetensors")},
    "denoiser": {"before its last rename": KillPoint(before_replace="/run/denoiser"),
                 "while saving its weights": KillPoint(
                     before_save="denoiser/diffusion_pytorch_model.safetensors")},
    "statistics": {"before its last rename": KillPoint(before_replace="/statistics.safetensors")},
    "sampling": {"before its last rename": KillPoint(before_replace=SET[3:])},
    "refinement": {"before its last rename": KillPoint(before_replace=SET[3:])},
    "evaluation": {"before its last rename": KillPoint(before_replace="/r.json")},
}


@dataclass
class Cycle:
    """What one kill and the command run again after it did."""
    stage: str
    point: str
    killed: bool = False
    files_after_kill: list[str] = field(default_factory=list)
    partial_after_kill: list[str] = field(default_factory=list)
    leftovers_after_kill: list[str] = field(default_factory=list)
    rerun_rc: int | None = None
    rerun_stderr: str = ""
    partial_after_rerun: list[str] = field(default_factory=list)
    leftovers_after_rerun: list[str] = field(default_factory=list)
    equal: bool | None = None


def in_own_process(args: list[str]) -> tuple[int, str]:
    r = gendd(args)
    return r.returncode, r.stderr


class References:
    """Uninterrupted runs of the stages' commands, made when first asked for (in `root`, from
    the `tiny` run `base` and the data in `data`), each in its own process unless `run` (args
    -> exit code, output) runs them otherwise."""

    def __init__(self, base: Path, data: Path, root: Path,
                 run: Callable[[list[str]], tuple[int, str]] = in_own_process):
        self.base, self.data, self.root, self.run, self.folders = base, data, root, run, {}

    def __call__(self, stage: Stage) -> tuple[Path, tuple[str, ...]]:
        """The folder compared with and the names of the stage's outputs in it."""
        name = stage.reference or stage.name
        if name not in self.folders:
            work = self.root / name
            work.mkdir(parents=True)
            rc, output = self.run(STAGES[name].prepare(self.base, self.data, work))
            if rc:
                raise RuntimeError(f"{name}: the uninterrupted run failed:\n{output[-3000:]}")
            self.folders[name] = work
        return self.folders[name], stage.reference_outputs or stage.outputs


def kill_and_rerun(stage: Stage, work: Path, refs: References, point: KillPoint,
                   rerun: Callable[[list[str]], tuple[int, str]] = in_own_process) -> Cycle:
    """Kill the stage's command at `point`, check the files, run it again (in its own process
    unless `rerun` runs it otherwise), compare its outputs with an uninterrupted run's."""
    ref, ref_outputs = refs(stage)
    work.mkdir(parents=True)
    args = stage.prepare(refs.base, refs.data, work)
    cycle = Cycle(stage.name, str(point))
    cycle.killed = killed(args, point).returncode == -signal.SIGKILL
    cycle.files_after_kill = sorted(str(p.relative_to(work)) for p in work.rglob("*")
                                    if p.is_file() and not hidden(p, work))
    cycle.partial_after_kill = partial_files(work)
    cycle.leftovers_after_kill = leftovers(work)
    cycle.rerun_rc, cycle.rerun_stderr = rerun(args)
    cycle.partial_after_rerun = partial_files(work)
    cycle.leftovers_after_rerun = leftovers(work)
    if cycle.rerun_rc == 0:
        cycle.equal = all(same_outputs(work, o, ref, r) for o, r in zip(stage.outputs, ref_outputs))
    return cycle


def make_base(data: Path, base: Path) -> None:
    """The data and the `tiny` run every stage starts from (kept where --keep has them)."""
    if (base / "denoiser").is_dir():
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_fashion_subset

    write_fashion_subset(data, 20, 10)
    r = gendd(train_args(data, base))
    if r.returncode:
        raise RuntimeError(f"the base run failed:\n{r.stderr[-3000:]}")


# ----- the table ------------------------------------------------------------------------------

ERROR_TESTS = re.compile(r"error|refuse|bad_|unknown|only_section|corrupt|checks_its")


def collected(*files: str, keep: re.Pattern | None = None) -> int:
    """How many test cases pytest collects from `files` (those whose name `keep` matches)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o",
                          "addopts=", "--collect-only", "-q", *files], cwd=ROOT,
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines()
               if "::" in line and (keep is None or keep.search(line.split("::")[-1])))


def probe_counts() -> dict[str, int]:
    return {"hostile files (tests/test_hostile_files.py)": collected("tests/test_hostile_files.py"),
            "bad inputs (error tests of tests/test_cli.py, tests/test_config.py)":
                collected("tests/test_cli.py", "tests/test_config.py", keep=ERROR_TESTS),
            "concurrency (tests/test_run_lock.py)": collected("tests/test_run_lock.py")}


def table(cycles: list[Cycle], stages: list[str]) -> str:
    rows = [("stage", "kills", "resumes completed", "partial files found",
             "temporaries left", "outputs equal to uninterrupted")]
    for name in stages:
        cs = [c for c in cycles if c.stage == name]
        rows.append((name, f"{sum(c.killed for c in cs)}/{len(cs)}",
                     f"{sum(c.rerun_rc == 0 for c in cs)}/{len(cs)}",
                     str(sum(len(c.partial_after_kill) + len(c.partial_after_rerun) for c in cs)),
                     str(sum(len(c.leftovers_after_rerun) for c in cs)),
                     "yes" if all(c.equal for c in cs) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(c: Cycle) -> str:
    lines = [f"{c.stage}: killed {c.point}: {'SIGKILL' if c.killed else 'NOT KILLED'}; "
             f"again: exit {c.rerun_rc}, outputs equal: {c.equal}"]
    lines += [f"  {k}: {v}" for k, v in (("partial after the kill", c.partial_after_kill),
                                         ("partial after the rerun", c.partial_after_rerun),
                                         ("left over after the rerun", c.leftovers_after_rerun))
              if v]
    if c.rerun_rc:
        lines.append("  " + (c.rerun_stderr.strip().splitlines() or ["(no output)"])[-1])
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=2, help="kill/resume cycles per stage")
    p.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    p.add_argument("--seed", type=int, default=0, help="seeds the kill points")
    p.add_argument("--keep", type=Path, default=None, help="work here and keep it (default: a "
                   "temporary folder, removed)")
    a = p.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="gendd-faults-"))
    t0 = time.perf_counter()
    cycles, rows = [], []
    try:
        make_base(work / "data", work / "base")
        refs = References(work / "base", work / "data", work / "reference")
        for name in a.stages:
            stage, t = STAGES[name], time.perf_counter()
            points = {f"kill{i}": kill_point(a.seed, stage, i) for i in range(a.kills)}
            points.update(EXTRA_POINTS.get(name, {}))
            for label, point in points.items():
                c = kill_and_rerun(stage, work / name / label.replace(" ", "-"), refs, point)
                if label in EXTRA_POINTS.get(name, {}):
                    c.stage = f"{name}, {label}"
                if c.stage not in rows:
                    rows.append(c.stage)
                cycles.append(c)
                print(report(c), flush=True)
            print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + table(cycles, rows))
    print("\nbad-input probes in the test suite (pytest cases):")
    for what, n in probe_counts().items():
        print(f"  {what}: {n}")
    print(f"\n{len(cycles)} cycles in {time.perf_counter() - t0:.0f} s; kill points seeded by "
          f"--seed {a.seed}")


if __name__ == "__main__":
    main()

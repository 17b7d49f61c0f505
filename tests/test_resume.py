"""A training run killed with SIGKILL resumes from its last checkpoint."""

import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_sigkill_mid_training_resumes_from_last_checkpoint(small_fashion, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "gendd.cli", "train", "--dataset", "fashion-mnist",
           "--data-root", str(small_fashion), "--preset", "tiny", "--out", str(run),
           "--set", "autoencoder.steps=400", "--set", "train.checkpoint_every=10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = run / "checkpoints" / "autoencoder"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpts.is_dir() and len(list(ckpts.glob("step_*"))) >= 2):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    done = max(int(p.name.split("_")[1]) for p in ckpts.glob("step_*"))
    assert 0 < done < 400
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{done}/400" in again.stderr  # the progress bar starts at the checkpoint
    assert not list(ckpts.glob(".tmp*"))  # no half-written checkpoint left behind
    assert (run / "denoiser").is_dir()
    # A finished run: the same command does nothing.
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "nothing left to do" in third.stdout

"""Two CPU processes (gloo, through torchrun) end with the weights of one process trained on the
same global batch."""

import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_processes_match_one_with_the_same_global_batch(small_fashion, tmp_path):
    args = ["train", "--dataset", "fashion-mnist", "--data-root", str(small_fashion),
            "--preset", "tiny", "--cpu", "--set", "train.fd_every=0",
            "--set", "train.mixed_precision=no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "gendd.cli", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(["torchrun", "--nproc_per_node", "2", "-m", "gendd.cli", *args,
                          "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    # Adam turns float-summation-order differences of near-zero gradients into small weight
    # differences; an update computed on another batch would differ by far more (~lr per step).
    for part, tol in (("autoencoder", 0.02), ("denoiser", 2e-3)):
        a = load_file(str(tmp_path / "one" / part / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "two" / part / "diffusion_pytorch_model.safetensors"))
        assert a.keys() == b.keys()
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        assert worst < tol, (part, worst)

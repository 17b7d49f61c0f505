"""Shared fixtures: small data sets written in the exact real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gendd.data.idx import write_idx

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_fashion_subset(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """A Fashion-MNIST folder of gzip IDX files: a stratified subset of the real data when the
    Debian package is installed, otherwise class-dependent synthetic images."""
    from gendd.data.idx import read_idx

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class, prefix in (("train", train_per_class, "train"),
                                     ("test", test_per_class, "t10k")):
        if REAL_FASHION.is_dir():
            x = read_idx(REAL_FASHION / f"{prefix}-images-idx3-ubyte.gz")
            y = read_idx(REAL_FASHION / f"{prefix}-labels-idx1-ubyte.gz")
            keep = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                   for c in range(10)])
            rng.shuffle(keep)
            x, y = x[keep], y[keep]
        else:
            y = np.repeat(np.arange(10, dtype=np.uint8), per_class)
            x = np.zeros((len(y), 28, 28), np.uint8)
            for i, c in enumerate(y):  # a bar whose position encodes the class, plus noise
                x[i, 2 + 2 * c:5 + 2 * c, 4:24] = 200
            x = np.clip(x + rng.integers(0, 40, x.shape), 0, 255).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def small_fashion(tmp_path_factory) -> Path:
    """20 training and 10 test images per class."""
    return write_fashion_subset(tmp_path_factory.mktemp("fmnist-small"), 20, 10)


@pytest.fixture(scope="session")
def tiny_run(small_fashion, tmp_path_factory) -> Path:
    """A run trained end to end with the `tiny` preset (seconds), shared by several tests."""
    from click.testing import CliRunner

    from gendd.cli import main

    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(main, ["train", "--dataset", "fashion-mnist", "--data-root",
                                       str(small_fashion), "--preset", "tiny", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run

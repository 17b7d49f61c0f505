"""MNIST / Fashion-MNIST IDX files, written here byte by byte with struct (gzip and raw), and
their one-line errors."""

import gzip
import struct

import numpy as np
import pytest
from data_writers import assert_user_error, data_env, gendd  # noqa: F401

from gendd.data import load_dataset


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: two zero bytes, type 0x08 (uint8), the number of dimensions, big-endian sizes."""
    return (struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
            + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


def write_mnist(root, train=30, test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28))
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte"
            (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_gzip_and_raw_idx_read_the_same(tmp_path, gz):
    ds = load_dataset("mnist", write_mnist(tmp_path / "m", gz=gz))
    ref = load_dataset("mnist", write_mnist(tmp_path / "ref", gz=not gz))
    assert ds.train_images.shape == (30, 1, 28, 28) and ds.test_labels.tolist() == list(range(10))
    assert ds.train_images.equal(ref.train_images) and ds.class_names[3] == "3"


def _corrupt(root, name, data):
    (root / name).unlink()
    (root / name.removesuffix(".gz")).write_bytes(data)


@pytest.mark.parametrize("name, data, message", [
    ("train-images-idx3-ubyte.gz", b"\x00\x01\x08\x03" + bytes(12), "bad magic number"),
    ("train-images-idx3-ubyte.gz", idx_bytes(np.zeros((30, 28, 28)))[:-5], "truncated or corrupt"),
    ("train-images-idx3-ubyte.gz", b"\x00\x00\x08\x03\x00", "truncated IDX header"),
    ("t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(9)), "9 labels for 10 images"),
    ("t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(10, 10)), "label 10 out of range 0..9"),
    ("train-images-idx3-ubyte.gz", b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + bytes(4),
     "data type 0x0d is not supported"),
])
def test_bad_idx_files_are_one_line_errors(tmp_path, name, data, message):
    root = write_mnist(tmp_path / "m")
    _corrupt(root, name, data)
    assert_user_error(gendd("datasets", "--check", "mnist", "--data-root", root),
                      name.removesuffix(".gz"), message)


def test_truncated_gzip_and_missing_file(tmp_path):
    root = write_mnist(tmp_path / "m")
    data = (root / "train-labels-idx1-ubyte.gz").read_bytes()
    (root / "train-labels-idx1-ubyte.gz").write_bytes(data[:-12])
    assert_user_error(gendd("datasets", "--check", "mnist", "--data-root", root),
                      "train-labels-idx1-ubyte.gz: cannot read IDX file")
    root = write_mnist(tmp_path / "m2")
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    assert_user_error(gendd("datasets", "--check", "mnist", "--data-root", root),
                      "missing t10k-images-idx3-ubyte.gz")

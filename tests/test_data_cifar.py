"""CIFAR-10/100 from the extracted folder and from the official .tar.gz, written here in the
exact distributed format, and their one-line errors."""

import numpy as np
import pytest
from data_writers import (CIFAR_ARCHIVE, assert_user_error, cifar_files, cifar_images, data_env,  # noqa: F401
                          gendd, py2_pickle, write_cifar_archive, write_cifar_folder, write_tar_gz)

from gendd.data import checksums, dataset_info, load_dataset
from gendd.errors import GenddError


@pytest.fixture
def accept_test_archives(monkeypatch):
    """Archives written by the tests have their own md5: make it the 'official' one."""
    def official(path):
        monkeypatch.setitem(checksums.OFFICIAL_MD5, path.name, checksums.md5_of(path))
        return path
    return official


@pytest.mark.parametrize("kind, classes", [("cifar-10", 10), ("cifar-100", 100)])
def test_folder_and_archive_read_the_same(tmp_path, kind, classes, accept_test_archives):
    write_cifar_folder(tmp_path / "extracted", kind, classes=classes, train_per_class=2,
                       test_per_class=1)
    accept_test_archives(write_cifar_archive(tmp_path / "archive", kind, classes=classes,
                                             train_per_class=2, test_per_class=1))
    a = load_dataset(kind, tmp_path / "extracted")
    b = load_dataset(kind, tmp_path / "archive")
    per_batch = 5 if kind == "cifar-10" else 1
    assert a.train_images.shape == (classes * 2 * per_batch, 3, 32, 32)
    assert a.test_images.shape == (classes, 3, 32, 32)
    assert a.class_names[:2] == ("class_0", "class_1") and a.num_classes == classes
    for x, y in ((a.train_images, b.train_images), (a.train_labels, b.train_labels),
                 (a.test_labels, b.test_labels)):
        assert x.equal(y)
    # Pixel layout: 1024 red values, then green, then blue, each a row-major 32x32 plane.
    raw = cifar_images(a.train_labels[:1].numpy())[0]
    assert a.train_images[0, 1].flatten().tolist() == raw[1024:2048].tolist()
    assert a.mean == dataset_info(kind).mean and len(a.mean) == 3


def test_found_under_data_root_and_gendd_data(tmp_path, monkeypatch):
    write_cifar_folder(tmp_path / "root", "cifar-10")  # root/cifar-10-batches-py/
    assert dataset_info("cifar10").locate(tmp_path / "root") == tmp_path / "root" / "cifar-10-batches-py"
    monkeypatch.setenv("GENDD_DATA", str(tmp_path / "env"))
    write_cifar_archive(tmp_path / "env" / "cifar-100", "cifar-100")
    assert dataset_info("cifar-100").locate() == tmp_path / "env" / "cifar-100" / CIFAR_ARCHIVE["cifar-100"]


def test_archive_checksum_mismatch_and_explicit_trust(tmp_path):
    archive = write_cifar_archive(tmp_path, "cifar-10")
    line = assert_user_error(gendd("datasets", "--check", "cifar-10", "--data-root", tmp_path),
                             str(archive), "differs from the official c58f30108f718f92721af3b95e74349a")
    assert "--trust-archive" in line
    ok = gendd("datasets", "--check", "cifar-10", "--data-root", tmp_path, "--trust-archive")
    assert ok.exit_code == 0, ok.output
    assert "train 200, test 20" in ok.output and "class_9" in ok.output
    assert load_dataset("cifar-10", tmp_path).train_images.shape[0] == 200
    # Trust is for that file as it was: a changed file is checked again.
    write_cifar_archive(tmp_path, "cifar-10", seed=1)
    with pytest.raises(GenddError, match="differs from the official"):
        load_dataset("cifar-10", tmp_path)


def _rewrite(folder, name, mutate):
    import pickle

    d = pickle.loads((folder / name).read_bytes(), encoding="bytes")
    mutate(d)
    (folder / name).write_bytes(py2_pickle(d))


@pytest.mark.parametrize("name, mutate, message", [
    ("data_batch_2", lambda d: d[b"labels"].__setitem__(0, 10), "label 10 out of range 0..9"),
    ("data_batch_2", lambda d: d[b"labels"].pop(), "39 labels for 40 images"),
    ("test_batch", lambda d: d.__setitem__(b"data", d[b"data"][:, :100]), "N x 3072 uint8"),
    ("data_batch_1", lambda d: d.pop(b"labels"), "no b'labels' entry"),
    ("batches.meta", lambda d: d[b"label_names"].pop(), "must list 10 class names"),
])
def test_bad_batches_are_one_line_errors(tmp_path, name, mutate, message):
    folder = write_cifar_folder(tmp_path, "cifar-10")
    _rewrite(folder, name, mutate)
    assert_user_error(gendd("datasets", "--check", "cifar-10", "--data-root", folder),
                      f"{folder / name}: ", message)


def test_missing_and_truncated_files(tmp_path, accept_test_archives):
    folder = write_cifar_folder(tmp_path / "f", "cifar-100", classes=100, train_per_class=1,
                                test_per_class=1)
    (folder / "test").unlink()
    assert_user_error(gendd("train", "--dataset", "cifar-100", "--data-root", folder, "--out",
                            tmp_path / "run"), f"{folder / 'test'}: missing")
    files = cifar_files("cifar-100", classes=100, train_per_class=1, test_per_class=1)
    (folder / "test").write_bytes(files["test"][: len(files["test"]) // 2])
    assert_user_error(gendd("datasets", "--check", "cifar-100", "--data-root", folder),
                      f"{folder / 'test'}: ", "truncated")
    # An archive without one of the batches, and a truncated archive.
    members = {f"cifar-10-batches-py/{n}": d for n, d in cifar_files("cifar-10").items()
               if n != "data_batch_4"}
    archive = accept_test_archives(write_tar_gz(tmp_path / "a" / CIFAR_ARCHIVE["cifar-10"], members))
    assert_user_error(gendd("datasets", "--check", "cifar-10", "--data-root", archive.parent),
                      str(archive), "member cifar-10-batches-py/data_batch_4 missing")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    accept_test_archives(archive)
    assert_user_error(gendd("datasets", "--check", "cifar-10", "--data-root", archive.parent),
                      str(archive), "corrupt or truncated archive")


def test_labels_as_numpy_arrays_are_accepted(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar-10")
    _rewrite(folder, "test_batch", lambda d: d.__setitem__(b"labels", np.array(d[b"labels"])))
    assert load_dataset("cifar-10", folder).test_labels.dtype.is_floating_point is False

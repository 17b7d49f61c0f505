"""Tiny-ImageNet-200 from a tree of JPEGs and from the official .zip layout, the decode cache,
and the one-line errors."""

import os

import pytest
from data_writers import (assert_user_error, data_env, gendd, jpeg_bytes, tiny_imagenet_files,  # noqa: F401
                          write_files, write_zip)

from gendd.data import cache, checksums, images, load_dataset
from gendd.errors import GenddError


@pytest.fixture
def tiny(tmp_path):
    return write_files(tmp_path / "data" / "tiny-imagenet-200", tiny_imagenet_files())


def _zip(tmp_path, files, monkeypatch):
    z = write_zip(tmp_path / "zipped" / "tiny-imagenet-200.zip",
                  {f"tiny-imagenet-200/{n}": d for n, d in files.items()})
    monkeypatch.setitem(checksums.OFFICIAL_MD5, z.name, checksums.md5_of(z))
    return z


def test_folder_and_zip_read_the_same(tmp_path, tiny, monkeypatch):
    ds = load_dataset("tiny-imagenet", tmp_path / "data")  # found as data/tiny-imagenet-200/
    assert ds.train_images.shape == (12, 3, 64, 64) and ds.test_images.shape == (6, 3, 64, 64)
    assert ds.num_classes == 3 and ds.class_names == ("thing 0", "thing 1", "thing 2")
    # Class k is the k-th wnid in sorted order; val labels come from val_annotations.txt.
    assert ds.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.test_labels.tolist() == [0, 1, 2, 0, 1, 2]
    # Each class has its own colour (channel 0 = 40 k): the labels really match the images.
    means = [float(ds.train_images[ds.train_labels == k, 0].float().mean()) for k in range(3)]
    assert [round(m / 40) for m in means] == [0, 1, 2]
    z = load_dataset("tiny-imagenet", _zip(tmp_path, tiny_imagenet_files(), monkeypatch).parent)
    assert z.train_images.equal(ds.train_images) and z.test_labels.equal(ds.test_labels)


def test_greyscale_jpegs_become_rgb(tmp_path, monkeypatch):
    files = tiny_imagenet_files()
    name = next(n for n in files if n.endswith("_1.JPEG"))
    files[name] = jpeg_bytes(128, mode="L")
    ds = load_dataset("tiny-imagenet", write_files(tmp_path / "t", files))
    assert ds.channels == 3


def test_second_load_comes_from_the_cache_until_a_file_changes(tiny, monkeypatch):
    first = load_dataset("tiny-imagenet", tiny)
    files = list(cache.cache_dir().glob("tiny-imagenet-*.safetensors"))
    assert len(files) == 1

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(images, "decode_images", no_decoding)
    import gendd.data.tiny_imagenet as ti

    monkeypatch.setattr(ti, "decode_images", no_decoding)
    again = load_dataset("tiny-imagenet", tiny)
    assert again.train_images.equal(first.train_images) and again.class_names == first.class_names
    # A changed image changes the fingerprint: decoded again, and the cache file replaced.
    monkeypatch.undo()
    monkeypatch.setenv("GENDD_CACHE", str(files[0].parent))
    img = next(tiny.glob("train/*/images/*.JPEG"))
    img.write_bytes(jpeg_bytes((255, 255, 255)))
    os.utime(img, ns=(1, 1))
    changed = load_dataset("tiny-imagenet", tiny)
    assert not changed.train_images.equal(first.train_images)
    assert list(cache.cache_dir().glob("tiny-imagenet-*.safetensors")) == files


def test_a_torn_cache_file_is_rebuilt(tiny):
    first = load_dataset("tiny-imagenet", tiny)
    (path,) = cache.cache_dir().glob("tiny-imagenet-*.safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    assert load_dataset("tiny-imagenet", tiny).train_images.equal(first.train_images)


def _broken(files, change):
    files = dict(files)
    change(files)
    return files


@pytest.mark.parametrize("change, where, message", [
    (lambda f: [f.pop(n) for n in list(f) if n.startswith("train/n00001014/images")],
     "train/n00001014/images", "missing class folder"),
    (lambda f: f.pop("val/val_annotations.txt"), "val/val_annotations.txt", "missing"),
    (lambda f: f.__setitem__("val/val_annotations.txt", b"val_0.JPEG\tn99999999\t0\t0\t1\t1\n"),
     "val_annotations.txt", "line 1: class id n99999999 is not in wnids.txt"),
    (lambda f: f.__setitem__("val/val_annotations.txt", b"val_77.JPEG\tn00001000\t0\n"),
     "val/images/val_77.JPEG", "missing"),
    (lambda f: f.__setitem__("train/n00001007/images/n00001007_2.JPEG", b"not a jpeg"),
     "n00001007_2.JPEG", "not a readable image"),
    (lambda f: f.__setitem__("train/n00001007/images/n00001007_2.JPEG", jpeg_bytes(0, (32, 32))),
     "n00001007_2.JPEG", "image is 32x32, the others 64x64"),
    (lambda f: [f.pop(n) for n in list(f) if n.startswith("val/")], "val", "missing split folder"),
])
def test_bad_trees_are_one_line_errors(tmp_path, change, where, message):
    root = write_files(tmp_path / "t", _broken(tiny_imagenet_files(), change))
    line = assert_user_error(gendd("datasets", "--check", "tiny-imagenet", "--data-root", root),
                             where, message)
    assert "pass " not in line  # no image-folder options to suggest here


def test_empty_class_and_zip_checksum(tmp_path, monkeypatch):
    files = tiny_imagenet_files()
    for n in [n for n in files if n.startswith("train/n00001000/images/")]:
        del files[n]
    root = write_files(tmp_path / "t", files)
    (root / "train/n00001000/images").mkdir()
    assert_user_error(gendd("datasets", "--check", "tiny-imagenet", "--data-root", root),
                      "train/n00001000/images: empty class")
    z = write_zip(tmp_path / "z" / "tiny-imagenet-200.zip",
                  {f"tiny-imagenet-200/{n}": d for n, d in tiny_imagenet_files().items()})
    with pytest.raises(GenddError, match="differs from the official 90528d7ca1a48142e341f4ef8d21d0de"):
        load_dataset("tiny-imagenet", z.parent)


def test_cli_check_prints_counts_per_split_and_class(tiny):
    r = gendd("datasets", "--check", "tiny-imagenet", "--data-root", tiny)
    assert r.exit_code == 0, r.output
    assert "3 classes, 3x64x64, train 12, test 6" in r.output
    assert any(line.split() == ["thing", "1", "4", "2"] for line in r.output.splitlines())

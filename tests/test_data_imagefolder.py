"""Image folders: layouts, the seeded stratified split, and the explicit policies for bad
files, mixed sizes and mixed modes."""

import pytest
from data_writers import assert_user_error, data_env, gendd, jpeg_bytes, png_bytes, write_files  # noqa: F401

from gendd.data import dataset_info, load_dataset
from gendd.data.imagefolder import FolderOptions, parse_options
from gendd.errors import GenddError


def folder(root, per_class=5, classes=("cat", "dog", "eel"), size=(32, 32), split=""):
    files = {}
    for k, c in enumerate(classes):
        for i in range(per_class):
            files[f"{split}{c}/{i}.png"] = png_bytes((60 * k, 20 * i, 100), size)
    return write_files(root, files)


def check(root, name="imagefolder"):
    return gendd("datasets", "--check", name, "--data-root", root)


def test_class_folders_with_a_seeded_stratified_split(tmp_path):
    root = folder(tmp_path / "f", per_class=10)
    ds = load_dataset("imagefolder", root)
    assert ds.class_names == ("cat", "dog", "eel") and ds.image_size == (32, 32)
    assert ds.train_labels.bincount().tolist() == [8, 8, 8]
    assert ds.test_labels.bincount().tolist() == [2, 2, 2]
    assert ds.mean == (0.5, 0.5, 0.5) and ds.channels == 3
    # The same seed gives the same split; another seed another one; test=0.5 holds out half.
    again = load_dataset("imagefolder", root)
    other = load_dataset("imagefolder:seed=1", root)
    assert again.test_images.equal(ds.test_images) and not other.test_images.equal(ds.test_images)
    assert load_dataset("imagefolder:test=0.5", root).test_labels.bincount().tolist() == [5, 5, 5]


def test_train_and_test_folders_are_used_as_given(tmp_path):
    root = folder(tmp_path / "f", per_class=3, split="train/")
    folder(root, per_class=1, split="test/")
    (root / "README.txt").write_text("ignored: not a class folder")
    ds = load_dataset("imagefolder", root)
    assert len(ds.train_labels) == 9 and ds.test_labels.tolist() == [0, 1, 2]
    r = check(root)
    assert r.exit_code == 0 and "3 classes, 3x32x32, train 9, test 3" in r.output, r.output


def test_bad_files_fail_or_are_skipped_with_a_warning(tmp_path):
    root = folder(tmp_path / "f")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "cat" / "broken.jpg").write_bytes(jpeg_bytes((1, 2, 3))[:100])
    assert_user_error(check(root), str(root / "cat" / "broken.jpg"), "not a readable image",
                      "bad=skip")
    r = check(root, "imagefolder:bad=skip")
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("gendd: warning")]
    assert len(warnings) == 2 and "notes.txt" in "".join(warnings)
    ds = load_dataset("imagefolder:bad=skip", root)
    assert len(ds.train_labels) + len(ds.test_labels) == 15


def test_mixed_sizes_fail_or_are_resized(tmp_path):
    root = folder(tmp_path / "f")
    (root / "eel" / "big.png").write_bytes(png_bytes((0, 0, 0), (48, 64)))
    assert_user_error(check(root), "big.png", "image is 48x64, the others 32x32", "size=HxW")
    ds = load_dataset("imagefolder:size=24x24", root)
    assert ds.image_size == (24, 24) and ds.num_classes == 3


def test_mixed_modes_fail_or_are_converted(tmp_path):
    root = folder(tmp_path / "f")
    (root / "eel" / "grey.png").write_bytes(png_bytes(90, mode="L"))
    assert_user_error(check(root), "grey.png", "mode L differs from RGB", "mode=RGB")
    assert load_dataset("imagefolder:mode=RGB", root).channels == 3
    grey = load_dataset("imagefolder:mode=L", root)
    assert grey.channels == 1 and grey.mean == (0.5,)
    palette = folder(tmp_path / "p")
    (palette / "cat" / "0.png").write_bytes(png_bytes(3, mode="P"))
    assert_user_error(check(palette), "0.png", "image mode P", "mode=RGB or mode=L")


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "eel").mkdir(), "eel: empty class"),
    (lambda r: (r / "test" / "cat").mkdir(parents=True), "train: missing split folder"),
    (lambda r: (r / "dog" / "x.bin").write_bytes(b"\0" * 10), "not a readable image (unknown format)"),
])
def test_layout_errors(tmp_path, make, message):
    root = folder(tmp_path / "f", classes=("cat", "dog"))
    make(root)
    assert_user_error(check(root), message)


def test_missing_class_folder_in_a_split_and_empty_after_skipping(tmp_path):
    root = folder(tmp_path / "f", per_class=2, split="train/", classes=("cat", "dog"))
    folder(root, per_class=1, split="test/", classes=("cat",))
    assert_user_error(check(root), str(root / "test" / "dog"), "missing class folder")
    root = folder(tmp_path / "g", classes=("cat", "dog"))
    for p in (root / "dog").iterdir():
        p.write_bytes(b"junk")
    r = check(root, "imagefolder:bad=skip")  # a warning per skipped file, then the error
    assert r.exit_code == 2 and r.output.splitlines()[-1].endswith("dog: empty class (no readable images left)")
    assert all(line.startswith("gendd: warning: skipped") for line in r.output.splitlines()[:-1])


def test_options_parse_canonically_and_reject_nonsense(tmp_path):
    assert parse_options("size=32, MODE=rgb,bad=skip") == FolderOptions((32, 32), "RGB", "skip")
    assert dataset_info("imagefolder:mode=rgb,size=16x8").name == "imagefolder:size=16x8,mode=RGB"
    assert dataset_info("imagefolder:").name == "imagefolder"
    for bad in ("size=0", "mode=CMYK", "bad=maybe", "test=1.5", "seed=x", "size"):
        with pytest.raises(GenddError, match="bad image folder option"):
            parse_options(bad)
    with pytest.raises(GenddError, match="unknown image folder option 'colour'"):
        parse_options("colour=red")
    with pytest.raises(GenddError, match="takes no options"):
        dataset_info("cifar-10:size=3")
    assert_user_error(gendd("datasets", "--check", "imagefolder"), "imagefolder not found",
                      "--data-root DIR")

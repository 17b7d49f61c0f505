"""Any folder of images, one sub-folder per class: `root/<class>/*` (JPEG, PNG, ... anything
Pillow reads), or `root/train/<class>/*` and `root/test/<class>/*` when those two exist.
Without them, a seeded stratified split holds out a fraction of each class as the test set.

Loading options come with the data set name, so that they are recorded in a run's
configuration: `imagefolder:size=32x32,mode=RGB,bad=skip,test=0.2,seed=0` (all optional):

  size=HxW (or size=N)   resize every image (cover, then centre-crop); default: all must match
  mode=RGB|L             convert every image; default: all must be RGB, or all grey
  bad=fail|skip          an unreadable or non-image file fails the load (default) or is skipped
  test=F                 held-out fraction of each class when there is no train/test split
  seed=N                 the seed of that split

Images are normalised with mean 0.5 and std 0.5 per channel (no published statistics).
Decoded images are kept in the data cache (cache.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gendd.data.base import ImageDataset, check_image_size
from gendd.data.cache import cached
from gendd.data.images import BAD_FILE_POLICIES, ImagePolicy, decode_images
from gendd.data.tree import DirTree
from gendd.errors import GenddError

NAME = "imagefolder"


@dataclass(frozen=True)
class FolderOptions:
    size: tuple[int, int] | None = None
    mode: str | None = None
    bad: str = "fail"
    test: float = 0.2
    seed: int = 0


def parse_options(text: str) -> FolderOptions:
    """'size=32x32,mode=rgb' -> FolderOptions; one-line errors for anything else."""
    values: dict = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        try:
            if not eq:
                raise ValueError
            if key == "size":
                h, _, w = value.lower().partition("x")
                values["size"] = (int(h), int(w or h))
                if min(values["size"]) < 1:
                    raise ValueError
            elif key == "mode":
                values["mode"] = {"rgb": "RGB", "l": "L", "grey": "L", "gray": "L"}[value.lower()]
            elif key == "bad":
                if value.lower() not in BAD_FILE_POLICIES:
                    raise ValueError
                values["bad"] = value.lower()
            elif key == "test":
                values["test"] = float(value)
                if not 0 < values["test"] < 1:
                    raise ValueError
            elif key == "seed":
                values["seed"] = int(value)
            else:
                raise GenddError(f"unknown image folder option '{key}' (known: size, mode, bad, "
                                 "test, seed)")
        except (ValueError, KeyError):
            raise GenddError(f"bad image folder option '{item}' (examples: size=32x32, mode=RGB, "
                             "bad=skip, test=0.2, seed=0)") from None
    return FolderOptions(**values)


def format_options(opts: FolderOptions) -> str:
    """The canonical text of the options that differ from the defaults ('' if none)."""
    parts = []
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        if value != f.default:
            parts.append(f"{f.name}={value[0]}x{value[1]}" if f.name == "size" else f"{f.name}={value}")
    return ",".join(parts)


def _class_files(tree: DirTree, split: str, classes: list[str]) -> list[list[str]]:
    out = []
    for c in classes:
        folder = f"{split}/{c}" if split else c
        if not tree.is_dir(folder):
            raise GenddError(f"{tree.where(folder)}: missing class folder")
        files = tree.files(folder)
        if not files:
            raise GenddError(f"{tree.where(folder)}: empty class (no files)")
        out.append([f"{folder}/{f}" for f in files])
    return out


def _split(per_class: list[list[str]], opts: FolderOptions) -> tuple[list[list[str]], list[list[str]]]:
    rng = np.random.default_rng(opts.seed)
    train, test = [], []
    for files in per_class:
        order = rng.permutation(len(files))
        n_test = min(len(files) - 1, round(opts.test * len(files)))
        test.append(sorted(files[i] for i in order[:n_test]))
        train.append(sorted(files[i] for i in order[n_test:]))
    return train, test


def _decode_split(tree, per_class, classes, policy, split):
    paths = [p for files in per_class for p in files]
    labels = np.repeat(np.arange(len(classes)), [len(f) for f in per_class])
    images, kept = decode_images(tree, paths, policy, f"{split} images")
    labels = labels[kept]
    counts = np.bincount(labels, minlength=len(classes))
    if split == "train" and counts.min() == 0:  # every class needs training images
        folder = str(Path(per_class[int(counts.argmin())][0]).parent)
        raise GenddError(f"{tree.where(folder)}: empty class (no readable images left)")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _read(tree: DirTree, name: str, opts: FolderOptions) -> ImageDataset:
    has_train, has_test = tree.is_dir("train"), tree.is_dir("test")
    if has_train or has_test:
        missing = "test" if has_train and not has_test else "train"
        if not (has_train and has_test):
            raise GenddError(f"{tree.where(missing)}: missing split folder (a folder with "
                             "train/ needs test/ too, and the other way round)")
        classes = tree.dirs("train")
        for c in tree.dirs("test"):
            if c not in classes:
                raise GenddError(f"{tree.where('train/' + c)}: missing class folder "
                                 f"(test/{c} exists)")
        train, test = _class_files(tree, "train", classes), _class_files(tree, "test", classes)
    else:
        classes = tree.dirs("")
        train, test = _split(_class_files(tree, "", classes), opts)
    if len(classes) < 2:
        raise GenddError(f"{tree.where()}: found {len(classes)} class folder(s), need at least 2 "
                         "(layout: <root>/<class>/<image files>)")
    policy = ImagePolicy(size=opts.size, resize=opts.size is not None, mode=opts.mode,
                         convert=opts.mode is not None, bad_files=opts.bad)
    x_train, y_train = _decode_split(tree, train, classes, policy, "train")
    # The test images must come out like the training images (same size and mode).
    channels, h, w = x_train.shape[1:]
    check_image_size(tree.where(), h, w)
    policy = dataclasses.replace(policy, size=(h, w), mode="RGB" if channels == 3 else "L")
    x_test, y_test = _decode_split(tree, test, classes, policy, "test")
    if len(y_test) == 0:
        raise GenddError(f"{tree.where()}: no test images (add a test/ split or more images "
                         "per class)")
    return ImageDataset(name, tuple(classes), x_train, y_train, x_test, y_test,
                        (0.5,) * channels, (0.5,) * channels)


def load_imagefolder(name: str, root: Path, opts: FolderOptions) -> ImageDataset:
    tree = DirTree(root)
    return cached(name, root, format_options(opts), tree.fingerprint(),
                  lambda: _read(tree, name, opts))

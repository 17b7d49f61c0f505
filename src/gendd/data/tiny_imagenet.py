"""Tiny-ImageNet-200: the `tiny-imagenet-200/` folder or the official .zip, read in place.

Layout: `wnids.txt` (the 200 WordNet ids), `words.txt` (id -> names),
`train/<wnid>/images/*.JPEG` (500 per class) and `val/images/*.JPEG` with
`val/val_annotations.txt` (tab-separated: file, wnid, box). `val` is the test split everyone
reports on (the official `test/` has no labels and is not read). Images are 64x64; the few
greyscale JPEGs are converted to RGB. Class k is the k-th wnid in sorted order (as an
ImageFolder over `train/` numbers them).

The 110,000 JPEGs are decoded once into the data cache (cache.py); later loads read that.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gendd.data.base import ImageDataset
from gendd.data.cache import cached
from gendd.data.checksums import OFFICIAL_MD5, verify_archive
from gendd.data.images import ImagePolicy, decode_images
from gendd.data.tree import DirTree, ZipTree
from gendd.errors import GenddError

ARCHIVE = "tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
_POLICY = ImagePolicy(size=(64, 64), mode="RGB", convert=True, hints=False)


def _text(tree, rel: str) -> list[str]:
    if not tree.is_file(rel):
        raise GenddError(f"{tree.where(rel)}: missing")
    try:
        return tree.read(rel).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise GenddError(f"{tree.where(rel)}: not a UTF-8 text file") from None


def _class_names(tree, wnids: list[str]) -> tuple[str, ...]:
    words = {}
    if tree.is_file("words.txt"):
        for line in _text(tree, "words.txt"):
            wnid, _, names = line.partition("\t")
            words[wnid] = names.split(",")[0].strip()
    first = [words.get(w) or w for w in wnids]
    # A few first names repeat across ids; keep names unique by adding the id there.
    return tuple(n if first.count(n) == 1 else f"{n} ({w})" for n, w in zip(first, wnids))


def _files(tree, wnids: list[str]) -> tuple[list[str], list[int], list[str], list[int]]:
    train, train_y = [], []
    for k, wnid in enumerate(wnids):
        folder = f"train/{wnid}/images"
        if not tree.is_dir(folder):
            raise GenddError(f"{tree.where(folder)}: missing class folder (listed in wnids.txt)")
        names = tree.files(folder)
        if not names:
            raise GenddError(f"{tree.where(folder)}: empty class (no images)")
        train += [f"{folder}/{n}" for n in names]
        train_y += [k] * len(names)
    index = {w: k for k, w in enumerate(wnids)}
    test, test_y = [], []
    where = tree.where("val/val_annotations.txt")
    for i, line in enumerate(_text(tree, "val/val_annotations.txt"), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise GenddError(f"{where}: line {i} is not 'file<TAB>wnid<TAB>box'")
        if fields[0] in ("", ".", "..") or "/" in fields[0] or "\\" in fields[0]:
            raise GenddError(f"{where}: line {i}: '{fields[0]}' is not a file name in val/images/")
        if fields[1] not in index:
            raise GenddError(f"{where}: line {i}: class id {fields[1]} is not in wnids.txt")
        test.append(f"val/images/{fields[0]}")
        test_y.append(index[fields[1]])
        if not tree.is_file(test[-1]):
            raise GenddError(f"{tree.where(test[-1])}: missing (named on line {i} of {where})")
    return train, train_y, test, test_y


def _decode(tree, source: Path, name: str, mean, std) -> ImageDataset:
    if isinstance(tree, ZipTree):
        verify_archive(source, OFFICIAL_MD5[ARCHIVE])
    for split in ("train", "val"):
        if not tree.is_dir(split):
            raise GenddError(f"{tree.where(split)}: missing split folder")
    wnids = sorted(set(w.strip() for w in _text(tree, "wnids.txt") if w.strip()))
    train, train_y, test, test_y = _files(tree, wnids)
    x_train, _ = decode_images(tree, train, _POLICY, desc="tiny-imagenet train")
    x_test, _ = decode_images(tree, test, _POLICY, desc="tiny-imagenet val")
    return ImageDataset(name, _class_names(tree, wnids),
                        torch.from_numpy(x_train), torch.tensor(train_y, dtype=torch.int64),
                        torch.from_numpy(x_test), torch.tensor(test_y, dtype=torch.int64),
                        tuple(mean), tuple(std))


def load_tiny_imagenet(name: str, source: Path, mean, std) -> ImageDataset:
    """Read Tiny-ImageNet from its folder or official zip `source`, through the data cache."""
    source = Path(source)
    tree = ZipTree(source, FOLDER + "/") if source.is_file() else DirTree(source)
    return cached(name, source, "", tree.fingerprint(),
                  lambda: _decode(tree, source, name, mean, std))

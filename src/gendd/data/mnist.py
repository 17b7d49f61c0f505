"""MNIST and Fashion-MNIST from their four IDX files."""

from __future__ import annotations

from pathlib import Path

import torch

from gendd.data.base import ImageDataset, check_image_size
from gendd.data.idx import read_idx
from gendd.errors import GenddError

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_idx_file(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise GenddError(f"{root}: missing {stem}.gz (or uncompressed {stem})")


def read_split(root: Path, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    img_path = find_idx_file(root, SPLIT_FILES[split][0])
    lbl_path = find_idx_file(root, SPLIT_FILES[split][1])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3:
        raise GenddError(f"{img_path}: expected 3 dimensions (N, H, W), found {images.ndim}")
    if labels.ndim != 1:
        raise GenddError(f"{lbl_path}: expected 1 dimension (N), found {labels.ndim}")
    if len(images) == 0:
        raise GenddError(f"{img_path}: no images (the {split} split needs at least one)")
    check_image_size(str(img_path), *images.shape[1:])
    if len(images) != len(labels):
        raise GenddError(f"{lbl_path}: {len(labels)} labels for {len(images)} images in {img_path.name}")
    if len(labels) and int(labels.max()) >= num_classes:
        raise GenddError(f"{lbl_path}: label {int(labels.max())} out of range 0..{num_classes - 1}")
    return (torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype("int64")))


def load_idx_dataset(name: str, root: Path, class_names, mean, std) -> ImageDataset:
    train_x, train_y = read_split(root, "train", len(class_names))
    test_x, test_y = read_split(root, "test", len(class_names))
    return ImageDataset(name, tuple(class_names), train_x, train_y, test_x, test_y,
                        tuple(mean), tuple(std))

"""Writing a set in other formats: the challenge's normalised tensor, an image folder, a grid."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from PIL import Image

from gendd.data import dataset_info, normalize
from gendd.errors import GenddError
from gendd.report import class_grid, save_png
from gendd.sets import DistilledSet
from gendd.utils.atomic import atomic_path

FORMATS = ("challenge", "imagefolder", "grid")


def export_challenge(dset: DistilledSet, dataset_name: str, out: Path) -> None:
    """A float tensor N x C x H x W, normalised with the data set's mean/std, ordered by class
    (labels implicit), as the challenge's evaluate.py reads it."""
    info = dataset_info(dataset_name)
    shape = tuple(dset.images.shape[1:])
    if info.channels is not None and shape != (info.channels, *info.image_size):
        raise GenddError(f"the set's images are {'x'.join(map(str, shape))}, {info.name}'s "
                         f"{info.channels}x{info.image_size[0]}x{info.image_size[1]}: --dataset "
                         "must name the set's own data set")
    ordered = dset.sorted_by_class()
    with atomic_path(out) as tmp:
        torch.save(normalize(ordered.images, info.mean, info.std), tmp)


def export_imagefolder(dset: DistilledSet, class_names: list[str], out: Path) -> None:
    """One PNG per image under out/<class name>/."""
    for k, name in enumerate(class_names):
        folder = out / (re.sub(r"[^\w.-]+", "_", name) or str(k))
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(dset.images[dset.labels == k]):
            arr = img.permute(1, 2, 0).numpy()
            save_png(Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr), folder / f"{i:05d}.png")


def export_set(dset: DistilledSet, fmt: str, out: Path, dataset_name: str | None = None) -> None:
    dataset_name = dataset_name or dset.metadata.get("dataset")
    names = dset.metadata.get("class_names") or [str(k) for k in range(int(dset.labels.max()) + 1)]
    if fmt == "challenge":
        if not dataset_name:
            raise GenddError("the set names no data set: pass --dataset for its normalisation")
        export_challenge(dset, dataset_name, out)
    elif fmt == "imagefolder":
        export_imagefolder(dset, names, out)
    elif fmt == "grid":
        save_png(class_grid(dset, len(names)), out)
    else:
        raise GenddError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")

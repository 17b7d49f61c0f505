"""Known data sets: their shapes, class names, normalisation and where to find them.

A data set is looked for, in order, in `--data-root` (the folder itself or its sub-folder named
like the data set), in `$GENDD_DATA/<folder>`, then in system locations (Debian's package
for Fashion-MNIST). New loaders register a `DatasetInfo` in `DATASETS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gendd.data.base import ImageDataset
from gendd.data.mnist import SPLIT_FILES, load_idx_dataset
from gendd.errors import GenddError

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str  # sub-folder name under a data root
    marker: str  # a file or folder whose presence identifies the data set in a folder
    load: Callable[[Path], ImageDataset]
    how_to_get: str
    system_dirs: tuple[str, ...] = field(default=())

    def candidates(self, data_root: str | os.PathLike | None) -> list[Path]:
        dirs: list[Path] = []
        if data_root is not None:
            dirs += [Path(data_root), Path(data_root) / self.folder]
        if os.environ.get("GENDD_DATA"):
            dirs.append(Path(os.environ["GENDD_DATA"]) / self.folder)
        dirs += [Path(d) for d in self.system_dirs]
        return dirs

    def locate(self, data_root: str | os.PathLike | None = None) -> Path | None:
        for d in self.candidates(data_root):
            if (d / self.marker).exists() or (d / (self.marker + ".gz")).exists():
                return d
        return None


def _idx_info(name, classes, mean, std, folder, how, system_dirs=()) -> DatasetInfo:
    return DatasetInfo(
        name=name, num_classes=10, channels=1, image_size=(28, 28), mean=mean, std=std,
        folder=folder, marker=SPLIT_FILES["train"][0],
        load=lambda root: load_idx_dataset(name, root, classes, mean, std),
        how_to_get=how, system_dirs=system_dirs)


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": _idx_info(
        "fashion-mnist", FASHION_CLASSES, (0.2860,), (0.3530,), "fashion-mnist",
        "install it with `apt-get install dataset-fashion-mnist` or pass --data-root DIR "
        "holding train-images-idx3-ubyte.gz and the other three IDX files",
        system_dirs=("/usr/share/datasets/fashion-mnist",)),
    "mnist": _idx_info(
        "mnist", DIGIT_CLASSES, (0.1307,), (0.3081,), "mnist",
        "pass --data-root DIR holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"),
}


def dataset_info(name: str) -> DatasetInfo:
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise GenddError(f"unknown data set '{name}' (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[key]


def load_dataset(name: str, data_root: str | os.PathLike | None = None) -> ImageDataset:
    """Find and read a data set fully into memory, or fail with a one-line GenddError."""
    info = dataset_info(name)
    root = info.locate(data_root)
    if root is None:
        where = ", ".join(str(d) for d in info.candidates(data_root)) or "nowhere"
        raise GenddError(f"{info.name} not found (looked in {where}): {info.how_to_get}")
    return info.load(root)

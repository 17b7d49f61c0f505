"""Baseline distilled sets, each a `DistilledSet` (uint8, ordered class by class):

- `random_real`: `ipc` real training images per class drawn at random.
- `herding`: per class, greedy herding (Welling, 2009) in the feature space of a network, as in
  the DC papers: repeatedly pick the image that brings the running mean of the chosen features
  closest to the class mean.
- `distribution_matching`: DM (Zhao & Bilen, WACV 2023): synthetic images initialised from real
  ones and optimised so that their mean embedding under a freshly, randomly initialised ConvNet
  (a new one every iteration) matches that of real images, class by class, with Siamese DSA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gendd.augment import DSA_STRATEGY, DSAParams, dsa
from gendd.data.base import ImageDataset, denormalize
from gendd.errors import GenddError
from gendd.sets import DistilledSet


def _check_ipc(dataset: ImageDataset, ipc: int) -> None:
    if ipc < 1:
        raise GenddError(f"--ipc must be at least 1, got {ipc}")
    counts = torch.bincount(dataset.train_labels, minlength=dataset.num_classes)
    if int(counts.min()) < ipc:
        c = int(counts.argmin())
        raise GenddError(f"class {c} ({dataset.class_names[c]}) has only {int(counts[c])} "
                         f"training images, fewer than --ipc {ipc}")


def _metadata(dataset: ImageDataset, method: str, ipc: int, seed: int, **extra) -> dict[str, Any]:
    return {"dataset": dataset.name, "class_names": list(dataset.class_names), "method": method,
            "ipc": ipc, "seed": seed, **extra}


def _class_indices(dataset: ImageDataset, c: int) -> torch.Tensor:
    return torch.nonzero(dataset.train_labels == c).flatten()


def random_indices(dataset: ImageDataset, ipc: int, seed: int) -> torch.Tensor:
    """Indices into the training set: `ipc` per class at random, class by class."""
    _check_ipc(dataset, ipc)
    g = torch.Generator().manual_seed(int(seed))
    picks = []
    for c in range(dataset.num_classes):
        idx = _class_indices(dataset, c)
        picks.append(idx[torch.randperm(len(idx), generator=g)[:ipc]])
    return torch.cat(picks)


def _set_from_indices(dataset: ImageDataset, idx: torch.Tensor, meta: dict) -> DistilledSet:
    meta = dict(meta, train_indices=[int(i) for i in idx])
    return DistilledSet(dataset.train_images[idx].clone(), dataset.train_labels[idx].clone(), meta)


def random_real(dataset: ImageDataset, ipc: int, seed: int = 0) -> DistilledSet:
    """`ipc` random real training images per class."""
    idx = random_indices(dataset, ipc, seed)
    return _set_from_indices(dataset, idx, _metadata(dataset, "random", ipc, seed))

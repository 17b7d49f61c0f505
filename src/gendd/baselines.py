"""Baseline distilled sets, each a `DistilledSet` (uint8, ordered class by class):

- `random_real`: `ipc` real training images per class drawn at random.
- `herding`: per class, greedy herding (Welling, 2009) in the feature space of a network, as in
  the DC papers: repeatedly pick the image that brings the running mean of the chosen features
  closest to the class mean.

Distribution Matching, the third baseline, is `gendd.refine` with `refine.DM_PAPER`'s settings.
"""

from __future__ import annotations

from typing import Any

import torch

from gendd.data.base import ImageDataset
from gendd.errors import GenddError
from gendd.evaluate import challenge_protocol, init_network, network_outputs, train_network
from gendd.runtime import seed_from
from gendd.sets import DistilledSet, check_ipc


def _check_ipc(dataset: ImageDataset, ipc: int) -> None:
    check_ipc(ipc)
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


# ---------------------------------------------------------------------------------------------
# Herding


def herding_order(features: torch.Tensor, k: int, target: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Greedy herding: indices of `k` rows of `features` (n x d) chosen one at a time so that
    the mean of the chosen rows stays as close as possible to `target` (default: the mean of
    all rows)."""
    features = features.double()
    mu = features.mean(0) if target is None else target.double()
    total = torch.zeros_like(mu)
    chosen: list[int] = []
    available = torch.ones(len(features), dtype=torch.bool)
    for j in range(1, k + 1):
        dist = ((mu - (total + features) / j) ** 2).sum(1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        available[i] = False
        total += features[i]
    return torch.tensor(chosen, dtype=torch.long)


def feature_network(dataset: ImageDataset, seed: int, kind: str = "trained",
                    train_per_class: int = 500, epochs: int = 5,
                    progress: bool = False) -> torch.nn.Module:
    """The ConvNet whose embedding herding works in: "trained" on a stratified sample of the
    real training set (SGD + DSA as the evaluator, `epochs` epochs), or "random" (untrained)."""
    protocol = challenge_protocol(epochs=epochs)
    g = torch.Generator().manual_seed(int(seed))
    net = init_network(protocol, dataset, seed_from(g))
    if kind == "random":
        return net
    if kind != "trained":
        raise GenddError(f"unknown herding feature space '{kind}' (trained, random)")
    sub = dataset.subset(train_per_class=train_per_class, seed=seed)
    return train_network(net, sub.normalize(sub.train_images), sub.train_labels, protocol, g,
                         progress)


def herding(dataset: ImageDataset, ipc: int, seed: int = 0, features: str = "trained",
            feature_train_per_class: int = 500, feature_epochs: int = 5,
            progress: bool = False) -> DistilledSet:
    """Per class, the `ipc` real training images chosen by herding in a ConvNet's feature
    space (raw embeddings of a ConvNet trained on real data, as in the DC papers)."""
    _check_ipc(dataset, ipc)
    net = feature_network(dataset, seed, features, feature_train_per_class, feature_epochs,
                          progress)
    picks = []
    for c in range(dataset.num_classes):
        idx = _class_indices(dataset, c)
        f = network_outputs(net, dataset.normalize(dataset.train_images[idx]), net.embed, 1024)
        picks.append(idx[herding_order(f, ipc)])
    meta = _metadata(dataset, "herding", ipc, seed, features=features,
                     feature_train_per_class=feature_train_per_class,
                     feature_epochs=feature_epochs)
    return _set_from_indices(dataset, torch.cat(picks), meta)

"""What Distribution Matching needs of the real data, recorded once at training time, so that a
run's model refines its samples with no access to the data set (`refine.method` "stored").

DM compares, at each iteration, the embeddings of a batch of real images of each class with
those of the set, both under one DSA transformation, in a freshly drawn random ConvNet. Every
random choice of an iteration is a seed (the network's, the augmentation's), so a run keeps,
for `draws` iterations, the two seeds and what the loss needs of each class's real batch: its
mean embedding (every block's pooled features), and its spread, the top principal directions
of its last-block embeddings, each scaled by the standard deviation along it. The stored
refinement redraws the same network and augmentation from the seeds and matches the set to
the class's sigma points, mean +- sqrt(m) times each of the m directions: they have the
batch's mean and (the top-m part of) its covariance, all that DM's mean term and the kernel
regression term depend on. Drawn with the refinement's own seed stream, the first iterations of
a stored refinement are those of a refinement on the real data.

File: RUN/statistics.safetensors, tensors `net_seeds`, `aug_seeds` (int64, draws), `means`
(fp16, draws x classes x features) and `spread` (fp16, draws x classes x m x last-block
features; absent in older runs, whose sigma points are the means alone), metadata `gendd`
(JSON: the data set's name, class names, image shape, normalisation, real images per class,
seed, evaluation network, blocks).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from gendd.data.base import ImageDataset
from gendd.errors import GenddError
from gendd.utils.atomic import atomic_path

FILE = "statistics.safetensors"


@dataclass
class RealStatistics:
    net_seeds: torch.Tensor  # int64, draws
    aug_seeds: torch.Tensor  # int64, draws
    means: torch.Tensor  # fp16, draws x classes x features (every block, `all_block_features`)
    info: dict[str, Any]
    spread: torch.Tensor | None = None  # fp16, draws x classes x m x last-block features

    def __len__(self) -> int:
        return len(self.net_seeds)

    def geometry(self) -> ImageDataset:
        """The data set's classes, image shape and normalisation, with no image in it: what
        the refinement and the evaluation network need to know of a data set."""
        c, h, w = self.info["image_shape"]
        none = torch.zeros(0, c, h, w, dtype=torch.uint8)
        labels = torch.zeros(0, dtype=torch.int64)
        return ImageDataset(self.info["dataset"], tuple(self.info["class_names"]), none, labels,
                            none, labels, tuple(self.info["mean"]), tuple(self.info["std"]))

    def class_means(self, draw: int, feature_blocks: str) -> torch.Tensor:
        """Draw `draw`'s class means (classes x features, fp32) as `feature_blocks` features:
        "all" as stored, "last" the last block's part of them (`last_block_part`)."""
        means = self.means[draw].float()
        if feature_blocks == "all":
            return means
        return last_block_part(means, self.info["blocks"])

    def class_points(self, draw: int, feature_blocks: str,
                     components: int | None = None) -> list[torch.Tensor]:
        """Draw `draw`'s real side, one tensor of vectors per class: the sigma points of the top
        `components` (default: all stored) directions of its last-block embeddings' spread
        (`sigma_points`) where the run stores it, else (or with every block's features) the
        class mean alone. Either way the points' mean is the class mean, so DM's mean term is
        the same."""
        means = self.class_means(draw, feature_blocks)
        if self.spread is None or feature_blocks == "all":
            return list(means.unsqueeze(1))
        spread = self.spread[draw, :, :components].float()  # stored by decreasing variance
        return [sigma_points(m, s) for m, s in zip(means, spread)]


def last_block_part(features: torch.Tensor, blocks: int) -> torch.Tensor:
    """The last block's part of `all_block_features` vectors (rows), rescaled to what
    `ConvNet.embed` gives (`all_block_features` scales every block by 1 / sqrt(blocks)). The
    ConvNet's blocks have one width, so each block holds 1 / blocks of the features."""
    return features[..., -(features.shape[-1] // blocks):] * math.sqrt(blocks)


def principal_spread(x: torch.Tensor, components: int) -> torch.Tensor:
    """The top `components` principal directions of the rows of `x`, each scaled by the standard
    deviation along it (rows s_i / sqrt(n) * v_i of the centred x = U S V^T): the sum of their
    outer products is the top-`components` part of the covariance. From the n x n Gram matrix,
    cheaper than an SVD when n is below the dimension; zero rows beyond the rank."""
    if components < 1:
        raise ValueError(f"a spread needs at least one direction (got {components})")
    centred = x - x.mean(0)
    _, vectors = torch.linalg.eigh(centred @ centred.T)  # ascending eigenvalues
    top = vectors[:, -components:].flip(1).T
    spread = top @ centred / math.sqrt(len(x))
    return torch.cat([spread, spread.new_zeros(components - len(spread), x.shape[1])])


def sigma_points(mean: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """2m points, mean +- sqrt(m) times each row of `spread` (m x d): their mean is `mean`, their
    covariance the sum of the rows' outer products (the unscented transform's points)."""
    scaled = spread * math.sqrt(len(spread))
    return torch.cat([mean + scaled, mean - scaled])


def save_statistics(path: Path, stats: RealStatistics) -> None:
    try:
        with atomic_path(path) as tmp:
            tensors = {"net_seeds": stats.net_seeds, "aug_seeds": stats.aug_seeds,
                       "means": stats.means.contiguous()}
            if stats.spread is not None:
                tensors["spread"] = stats.spread.contiguous()
            save_file(tensors, str(tmp),
                      metadata={"gendd": json.dumps(stats.info)})
    except (OSError, SafetensorError) as e:
        raise GenddError(f"cannot write {path}: {e.strerror if isinstance(e, OSError) else e}"
                         ) from None


def load_statistics(run: Path) -> RealStatistics:
    path = Path(run) / FILE
    if not path.is_file():
        raise GenddError(f"{run}: no stored real-data statistics ({FILE}); run this run's "
                         f"`gendd train --dataset D --out {run}` again to record them "
                         "(train.statistics_draws > 0)")
    try:
        with safe_open(str(path), "pt") as f:
            info = json.loads((f.metadata() or {})["gendd"])
            tensors = {name: f.get_tensor(name) for name in f.keys()
                       if name in ("net_seeds", "aug_seeds", "means", "spread")}
        stats = RealStatistics(**tensors, info=info)
        _check(stats)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise GenddError(f"{path}: not a gendd statistics file ({e})") from None
    return stats


def data_geometry(source: ImageDataset | RealStatistics) -> ImageDataset:
    """The data set itself, or the geometry of the one that stored statistics were taken from."""
    return source.geometry() if isinstance(source, RealStatistics) else source


def _check(stats: RealStatistics) -> None:
    info = stats.info
    if not isinstance(info, dict):
        raise ValueError("metadata is not an object")
    missing = [key for key in ("dataset", "class_names", "image_shape", "mean", "std", "blocks",
                               "model") if key not in info]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    draws, classes = len(stats.net_seeds), len(info["class_names"])
    if (stats.aug_seeds.shape != (draws,) or stats.means.ndim != 3
            or stats.means.shape[:2] != (draws, classes) or draws == 0):
        raise ValueError(f"tensor shapes {tuple(stats.means.shape)} do not fit {draws} draws "
                         f"of {classes} classes")
    spread = stats.spread
    if spread is not None and (spread.ndim != 4 or spread.shape[:2] != (draws, classes)
                               or spread.shape[2] == 0
                               or spread.shape[3] * info["blocks"] != stats.means.shape[2]):
        raise ValueError(f"spread shape {tuple(spread.shape)} does not fit {draws} draws of "
                         f"{classes} classes of last-block features")

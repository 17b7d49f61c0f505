"""Refinement: Distribution Matching (DM, Zhao & Bilen, WACV 2023) started from a set.

The set's images are learnt in normalised space with SGD. Each iteration draws a freshly,
randomly initialised ConvNet, embeds `batch_real` real images of every class and the set's
images under the same (Siamese) DSA transformation, and lowers the matching loss of those
embeddings: DM's class-mean gap plus the weighted terms of `gendd.matching_losses`. Against a
run's stored statistics (`gendd.real_statistics`), the real side of each iteration is read from
the run instead: the data set is not needed, and the terms that the stored class means and
spreads determine (the mean gap and the kernel regression) are matched.

`settings_at` turns a `RefineConfig` into the settings used at one IPC (its per-IPC rule, and
the learning rate and regression weight scaled with the IPC). `gendd baseline dm` is this same
loop from random real images with `DM_PAPER`'s settings.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

import torch
from tqdm.auto import tqdm

from gendd.augment import DSA_STRATEGY, dsa
from gendd.baselines import random_real
from gendd.config import RefineConfig
from gendd.data.base import ImageDataset, denormalize, normalised_range
from gendd.errors import GenddError
from gendd.evaluate import challenge_protocol, check_images, init_network, reinit_network_
from gendd.matching_losses import (all_block_features, centre_discrimination, class_mean_gap,
                                    gaussian_mmd_gap, kernel_regression_loss)
from gendd.real_statistics import (RealStatistics, data_geometry, last_block_part,
                                   principal_spread)
from gendd.runtime import autocast, autocast_dtype, compiled, default_device, seed_from
from gendd.sets import DistilledSet, check_ipc

MOMENTUM = 0.5  # DM's, for the images' SGD
MMD_BANDWIDTH = 0.25  # the kernel's variance, times the median squared real-real distance
REGRESSION_RIDGE = 1e-2  # times the mean of the kernel's diagonal
RATES = ("lr", "sigma_lr", "stored_lr")  # the images' learning rates, scaled with the IPC

# The DM paper's settings: DM's own loss only, one DSA draw per class, a constant rate of 1.0
# at every IPC, the images clamped once at the end. (The paper runs 20,000 iterations.)
DM_PAPER = RefineConfig(iterations=1000, lr=1.0, reference_ipc=0, lr_schedule="constant",
                        augmentation="per-class", range_projection="at-end",
                        feature_blocks="last", mmd=0.0, discrimination=0.0, regression=0.0,
                        per_ipc={})


def settings_at(cfg: RefineConfig, ipc: int) -> RefineConfig:
    """`cfg` as applied at `ipc` images per class: its `per_ipc` rule with the largest
    threshold <= ipc, then the learning rates times ipc / reference_ipc (DM's loss sees a
    class's images through their mean, so each image's gradient shrinks as 1 / ipc) and
    `regression` times reference_ipc / ipc (which undoes that growth for the regression term)."""
    check_ipc(ipc)
    thresholds = [t for t in cfg.per_ipc if t <= ipc]
    rule = cfg.per_ipc[max(thresholds)] if thresholds else {}
    applied = dataclasses.replace(cfg, **rule, per_ipc={})
    if not applied.reference_ipc:
        return applied
    ref = applied.reference_ipc  # x * ipc / ref, not x * (ipc / ref): the committed sets' floats
    return dataclasses.replace(applied, **{r: getattr(applied, r) * ipc / ref for r in RATES},
                               regression=applied.regression * ref / ipc, reference_ipc=0)


def stored_settings(settings: RefineConfig, stats: RealStatistics) -> RefineConfig:
    """The settings a refinement against `stats` runs with. The MMD and discrimination terms
    need the real embeddings one by one and are dropped; DM's mean term and the kernel
    regression term need only each class's mean and covariance, which the sigma points of the
    stored spread carry (`RealStatistics.class_points`; its top `stored_components` directions,
    at most as many as are stored), at the rate `sigma_lr`. The spread is of the last block's
    embeddings, so with it the refinement embeds with the last block. Without it (statistics
    stored with `train.statistics_components` 0) only the mean term is left, at its own rate
    `stored_lr` (its gradient is a fraction of the full loss's)."""
    settings = dataclasses.replace(settings, mmd=0.0, discrimination=0.0)
    if stats.spread is not None:
        return dataclasses.replace(settings, lr=settings.sigma_lr, feature_blocks="last",
                                   stored_components=min(settings.stored_components,
                                                         stats.spread.shape[2]))
    return dataclasses.replace(settings, lr=settings.stored_lr, regression=0.0)


def matching_loss(real: list[torch.Tensor], syn: list[torch.Tensor],
                  settings: RefineConfig) -> torch.Tensor:
    """DM's class-mean gap plus the weighted extra terms, of per-class embeddings."""
    loss = class_mean_gap(real, syn)
    if settings.mmd > 0:
        loss = loss + settings.mmd * gaussian_mmd_gap(real, syn, MMD_BANDWIDTH)
    if settings.discrimination > 0:
        loss = loss + settings.discrimination * centre_discrimination(real, syn)
    if settings.regression > 0:
        loss = loss + settings.regression * kernel_regression_loss(real, syn, REGRESSION_RIDGE)
    return loss


def starting_set(dataset: ImageDataset, ipc: int, seed: int,
                 init: DistilledSet | None) -> DistilledSet:
    """`init` checked and ordered by class, or `ipc` random real images per class."""
    if init is None:
        return random_real(dataset, ipc, seed)
    check_images(init.images, init.labels, dataset, normalised=False)
    init = init.sorted_by_class()
    expected = torch.arange(dataset.num_classes).repeat_interleave(ipc)
    if not torch.equal(init.labels, expected):
        raise GenddError(f"the initial set must hold {ipc} images of each of the "
                         f"{dataset.num_classes} classes")
    return init


def embedding_network(dataset: ImageDataset, feature_blocks: str, device: torch.device):
    """The embedding network (re-drawn in place every iteration, so that its forward is
    compiled once per call) and its compiled embedding function."""
    net = init_network(challenge_protocol(), dataset, 0).to(device).train().requires_grad_(False)
    if feature_blocks == "all" and not hasattr(net, "embed_with_maps"):
        raise GenddError("embedding with every block's features needs a ConvNet")
    amp = autocast_dtype(device, True)

    def embed(x):
        with autocast(device, amp):
            if feature_blocks == "last":
                return net.embed(x).float()
            return all_block_features([m.float() for m in net.embed_with_maps(x)[1]])

    return net, compiled(embed, device)


def refine(source: ImageDataset | RealStatistics, ipc: int, settings: RefineConfig,
           seed: int = 0, init: DistilledSet | None = None,
           progress: bool = False) -> DistilledSet:
    """DM on `init` (or on random real images) with `settings` as applied at this IPC
    (`settings_at`), against the real data set or a run's stored statistics of it (`source`;
    these need `init`). The result is quantised for the set file: de-normalised, clamped to
    [0, 1] and rounded to uint8."""
    stored, dataset = isinstance(source, RealStatistics), data_geometry(source)
    if stored and init is None:
        raise GenddError("refinement against stored statistics starts from a given set")
    start = starting_set(dataset, ipc, seed, init)
    images = matched_images(source, start, settings, seed, progress)
    used = stored_settings(settings, source) if stored else settings
    meta = {"dataset": dataset.name, "class_names": list(dataset.class_names),
            "method": "stored" if stored else "dm", "ipc": ipc, "seed": seed,
            "init": start.metadata.get("generator", "random real"),
            "settings": dataclasses.asdict(used),
            "quantisation": "denormalise, clamp to [0,1], round to uint8"}
    return DistilledSet(denormalize(images, dataset.mean, dataset.std), start.labels.clone(), meta)


def matched_images(source: ImageDataset | RealStatistics, start: DistilledSet,
                   settings: RefineConfig, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """`settings.iterations` + 1 DM steps from `start` (ordered by class, the same number of
    images per class); the normalised float images, on the CPU. `source` is the real data set,
    or a run's stored statistics of it (then with `stored_settings`)."""
    if settings.per_ipc or settings.reference_ipc:
        raise GenddError("refine takes the settings at one IPC (refine.settings_at)")
    stored, dataset = isinstance(source, RealStatistics), data_geometry(source)
    if stored:
        settings = stored_settings(settings, source)
    device = default_device()
    syn = dataset.normalize(start.images).to(device).requires_grad_(True)
    pixel_lo, pixel_hi = (b.to(device) for b in normalised_range(dataset.mean, dataset.std))
    opt = torch.optim.SGD([syn], lr=settings.lr, momentum=MOMENTUM)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.iterations + 1)
                if settings.lr_schedule == "cosine" else None)
    net, embed = embedding_network(dataset, settings.feature_blocks, device)
    draws = (stored_draws(source, net, settings, device) if stored
             else _real_draws(dataset, settings, seed, net, embed, device))
    for _ in tqdm(range(settings.iterations + 1), desc="DM", disable=not progress, leave=False):
        _, aug_seeds, f_real = next(draws)
        loss = set_matching_loss(syn, f_real, aug_seeds, embed, settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if settings.range_projection == "every-step":
            with torch.no_grad():
                syn.clamp_(pixel_lo, pixel_hi)
        if schedule is not None:
            schedule.step()
    return syn.detach().cpu()


def set_matching_loss(syn: torch.Tensor, f_real: list[torch.Tensor], aug_seeds: list[int],
                      embed, settings: RefineConfig) -> torch.Tensor:
    """The matching loss of the normalised set `syn` (ordered by class, as many images of
    each) against one draw's real side: each class's embedded real batch (or stored points)
    `f_real`, under its DSA draw `aug_seeds[c]` (Siamese: the real side had the same)."""
    ipc, dsa_params = len(syn) // len(f_real), challenge_protocol().dsa_params
    syns = [dsa(syn[c * ipc:(c + 1) * ipc], torch.Generator().manual_seed(seed), DSA_STRATEGY,
                dsa_params, siamese=True) for c, seed in enumerate(aug_seeds)]
    # One forward pass for all classes: the ConvNet (instance norm) embeds each image on its
    # own, so this equals DM's per-class passes.
    return matching_loss(f_real, embed(torch.cat(syns)).split(ipc), settings)


def _real_draws(dataset: ImageDataset, settings: RefineConfig, seed: int, net, embed,
                device: torch.device) -> Iterator[tuple[int, list[int], list[torch.Tensor]]]:
    """DM's real side, one iteration at a time: `net` re-drawn in place, then (its seed, each
    class's augmentation seed, each class's embedded real batch)."""
    g = torch.Generator().manual_seed(int(seed))
    k = dataset.num_classes
    real_by_class = [torch.nonzero(dataset.train_labels == c).flatten() for c in range(k)]
    real_norm = dataset.normalize(dataset.train_images)  # the whole set, normalised once
    protocol = challenge_protocol()
    while True:
        net_seed = seed_from(g)
        reinit_network_(net, protocol, dataset, net_seed)
        shared_seed = seed_from(g) if settings.augmentation == "shared" else None
        aug_seeds, reals = [], []
        for c in range(k):
            idx = real_by_class[c]
            pick = idx[torch.randperm(len(idx), generator=g)[:settings.batch_real]]
            aug_seeds.append(shared_seed if shared_seed is not None else seed_from(g))
            reals.append(dsa(real_norm[pick].to(device),
                             torch.Generator().manual_seed(aug_seeds[-1]), DSA_STRATEGY,
                             protocol.dsa_params, siamese=True))
        with torch.no_grad():
            f_real = embed(torch.cat(reals)).split([len(r) for r in reals])
        yield net_seed, aug_seeds, list(f_real)


def stored_draws(stats: RealStatistics, net, settings: RefineConfig,
                  device: torch.device) -> Iterator[tuple[int, list[int], list[torch.Tensor]]]:
    """The stored draws in their order, again from the first after the last; as `_real_draws`
    with each class's real batch replaced by its stored points (`RealStatistics.class_points`,
    of `settings.stored_components` directions)."""
    dataset, protocol = stats.geometry(), challenge_protocol()
    k = dataset.num_classes
    for draw in itertools.cycle(range(len(stats))):
        net_seed, aug_seed = int(stats.net_seeds[draw]), int(stats.aug_seeds[draw])
        reinit_network_(net, protocol, dataset, net_seed)
        points = torch.stack(stats.class_points(draw, settings.feature_blocks,
                                                settings.stored_components)).to(device)
        yield net_seed, [aug_seed] * k, list(points)


def record_statistics(dataset: ImageDataset, draws: int, batch_real: int, components: int,
                      seed: int = 0, progress: bool = False) -> RealStatistics:
    """`draws` iterations of DM's real side (one DSA draw shared by the classes, every block's
    features, `batch_real` images per class, the seed stream of `refine` with `seed`), kept
    as seeds, class means and the spread of each class's last-block embeddings (`components`
    scaled principal directions; `real_statistics.principal_spread`)."""
    settings = RefineConfig(batch_real=batch_real, augmentation="shared", feature_blocks="all")
    device = default_device()
    net, embed = embedding_network(dataset, "all", device)
    depth = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    real = _real_draws(dataset, settings, seed, net, embed, device)
    net_seeds, aug_seeds, means, spreads = [], [], [], []
    for _ in tqdm(range(draws), desc="statistics", disable=not progress, leave=False):
        net_seed, augs, f_real = next(real)
        net_seeds.append(net_seed)
        aug_seeds.append(augs[0])
        means.append(torch.stack([f.mean(0) for f in f_real]).half().cpu())
        if components:
            spreads.append(torch.stack([principal_spread(last_block_part(f, depth),
                                                         components) for f in f_real]).half().cpu())
    info = {"dataset": dataset.name, "class_names": list(dataset.class_names),
            "image_shape": [dataset.channels, *dataset.image_size],
            "mean": list(dataset.mean), "std": list(dataset.std), "batch_real": batch_real,
            "seed": seed, "model": challenge_protocol().model, "blocks": depth}
    return RealStatistics(torch.tensor(net_seeds, dtype=torch.int64),
                          torch.tensor(aug_seeds, dtype=torch.int64), torch.stack(means), info,
                          torch.stack(spreads) if spreads else None)

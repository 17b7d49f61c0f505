"""Baseline distilled sets, each a `DistilledSet` (uint8, ordered class by class):

- `random_real`: `ipc` real training images per class drawn at random.
- `herding`: per class, greedy herding (Welling, 2009) in the feature space of a network, as in
  the DC papers: repeatedly pick the image that brings the running mean of the chosen features
  closest to the class mean.
- `distribution_matching`: DM (Zhao & Bilen, WACV 2023): synthetic images initialised from real
  ones and optimised so that their mean embedding under a freshly, randomly initialised ConvNet
  (a new one every iteration) matches that of real images, class by class, with Siamese DSA.
  Its loss terms (the mean gap and the optional MMD, attention, discrimination and regression
  terms) are the pure functions of `gendd.matching_losses`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gendd.augment import DSA_STRATEGY, dsa
from gendd.config import AUGMENTATION_DRAWS, FEATURE_BLOCKS, LR_SCHEDULES, RANGE_PROJECTIONS
from gendd.data.base import ImageDataset, denormalize, normalised_range
from gendd.errors import GenddError
from gendd.evaluate import (_autocast, _sgd, autocast_dtype, challenge_protocol, check_images,
                            compiled, default_device, init_network, make_loss_fn,
                            reinit_network_, seed_from, test_accuracy, train_network)
from gendd.matching_losses import (all_block_features, centre_discrimination, class_mean_gap,
                                    gaussian_mmd_gap, kernel_regression_loss, spatial_attention)
from gendd.sets import DistilledSet


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise GenddError(f"unknown {what} '{value}' ({' or '.join(choices)})")


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


# ---------------------------------------------------------------------------------------------
# Herding


def herding_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """Greedy herding: indices of `k` rows of `features` (n x d) chosen one at a time so that
    the mean of the chosen rows stays as close as possible to the mean of all rows."""
    features = features.double()
    mu = features.mean(0)
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


@torch.inference_mode()
def embed_images(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 1024,
                 fast: bool = True) -> torch.Tensor:
    """`net.embed` of normalised float images, in eval mode, in batches (float32 output)."""
    device = next(net.parameters()).device
    amp = autocast_dtype(device, fast)
    net.eval()
    out = []
    for s in range(0, len(images), batch_size):
        with _autocast(device, amp):
            out.append(net.embed(images[s:s + batch_size].to(device)).float().cpu())
    return torch.cat(out)


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
        f = embed_images(net, dataset.normalize(dataset.train_images[idx]))
        picks.append(idx[herding_order(f, ipc)])
    meta = _metadata(dataset, "herding", ipc, seed, features=features,
                     feature_train_per_class=feature_train_per_class,
                     feature_epochs=feature_epochs)
    return _set_from_indices(dataset, torch.cat(picks), meta)


# ---------------------------------------------------------------------------------------------
# Distribution matching


def trained_snapshots(dataset: ImageDataset, images: torch.Tensor, nets: int, steps: int,
                      every: int, generator: torch.Generator, model: str = "convnet",
                      batch_size: int = 256, probe_size: int = 1024,
                      ) -> list[tuple[dict[str, torch.Tensor], float]]:
    """IDM's "enriched model sampling" (Zhao et al., CVPR 2023), computed up front: `nets`
    networks of the evaluation architecture, each trained on `dataset`'s training images
    (`images`: all of them, normalised, in the data set's order) for `steps`
    SGD steps (the evaluator's optimiser: lr 0.01, momentum 0.9, weight decay 5e-4; batches of
    `batch_size`, no augmentation, as IDM trains its queue), their weights saved every `every`
    steps. Returns (state dict, accuracy as a fraction on `probe_size` random training images)
    per snapshot: networks at every stage of training, from nearly random to fitted."""
    device = default_device()
    protocol = challenge_protocol(model=model)
    x_all, y_all = images, dataset.train_labels.long()
    snapshots = []
    net = init_network(protocol, dataset, 0).to(device)
    loss_fn = make_loss_fn(net, device, protocol.fast)  # one module, so compiled once
    for _ in range(nets):
        reinit_network_(net, protocol, dataset, seed_from(generator))
        net.train()
        opt = _sgd(net.parameters(), protocol, protocol.lr_at(0))
        for step in range(1, steps + 1):
            idx = torch.randint(len(y_all), (batch_size,), generator=generator)
            loss = loss_fn(x_all[idx].to(device), y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % every == 0:
                probe = torch.randint(len(y_all), (probe_size,), generator=generator)
                acc = test_accuracy(net, x_all[probe], y_all[probe], fast=protocol.fast) / 100
                state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                snapshots.append((state, acc))
    return snapshots


class SyntheticModelPool:
    """FRePo's model pool (Zhou et al., NeurIPS 2022): `size` networks of the evaluation
    architecture trained online on the synthetic set itself. After each use a network takes
    one SGD step (the evaluator's optimiser, on the DSA-augmented set, hard labels), and one
    that has taken `max_steps` steps is re-drawn at random, so over a run the pool's features
    range from random to fitted to the set."""

    def __init__(self, protocol, dataset: ImageDataset, size: int, max_steps: int,
                 generator: torch.Generator, device: torch.device, dsa_strategy: str):
        self.protocol, self.dataset, self.max_steps = protocol, dataset, max_steps
        self.g, self.dsa_strategy = generator, dsa_strategy
        self.nets = [init_network(protocol, dataset, 0).to(device).train() for _ in range(size)]
        self.optimisers: list[torch.optim.Optimizer | None] = [None] * size
        self.ages = [0] * size
        for i in range(size):
            self._redraw(i)

    def _redraw(self, i: int) -> None:
        reinit_network_(self.nets[i], self.protocol, self.dataset, seed_from(self.g))
        self.optimisers[i] = _sgd(self.nets[i].parameters(), self.protocol, self.protocol.lr)
        self.ages[i] = 0

    def step(self, i: int, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One training step of network i on `images` (detached), re-drawing it first if it
        has taken `max_steps`."""
        if self.ages[i] >= self.max_steps:
            self._redraw(i)
        x = dsa(images.detach(), torch.Generator().manual_seed(seed_from(self.g)), self.dsa_strategy,
                self.protocol.dsa_params)
        loss = F.cross_entropy(self.nets[i](x), labels)
        self.optimisers[i].zero_grad(set_to_none=True)
        loss.backward()
        self.optimisers[i].step()
        self.ages[i] += 1


def distribution_matching(dataset: ImageDataset, ipc: int, seed: int = 0, iterations: int = 1000,
                          lr_img: float = 1.0, momentum: float = 0.5, batch_real: int = 256,
                          model: str = "convnet", dsa_strategy: str = DSA_STRATEGY,
                          progress: bool = False, return_float: bool = False,
                          init: DistilledSet | None = None, attention_weight: float = 0.0,
                          mmd_weight: float = 0.0,
                          mmd_bandwidth: float | Sequence[float] = 0.25,
                          trained_nets: int = 0, trained_steps: int = 100,
                          snapshot_every: int = 10, trained_share: float = 0.5,
                          ce_weight: float = 0.0, discrimination_weight: float = 0.0,
                          regression_weight: float = 0.0, regression_ridge: float = 1e-2,
                          pool_weight: float = 0.0, pool_size: int = 4, pool_steps: int = 100,
                          pool_real: int = 64, nets_per_iteration: int = 1,
                          embedding_nets: int = 1, feature_blocks: str = "last",
                          lr_schedule: str = "constant", augmentation: str = "per-class",
                          range_projection: str = "at-end"):
    """DM (Zhao & Bilen, WACV 2023). Synthetic images, initialised from random real ones (or
    from `init`, a set of `ipc` images per class, e.g. a generated one, to refine it), are
    learnt in normalised space with SGD (lr `lr_img` = 1.0, momentum 0.5); each iteration draws a
    fresh randomly initialised ConvNet and, class by class, matches the mean embedding of
    `batch_real` real images with that of the class's synthetic images, both under the same
    (Siamese) DSA transformation. The paper runs 20,000 iterations. With `nets_per_iteration`
    > 1 each iteration averages the loss over that many networks, each with its own real
    images and DSA draw (at `batch_real` / `nets_per_iteration` real images per class the
    cost is about the same: a lower-variance estimate of the expected loss over networks).
    With `embedding_nets` > 1 each loss is computed on one embedding made of that many random
    networks': their embeddings side by side, each scaled by 1/sqrt(`embedding_nets`), as the
    embedding of one wider network whose blocks do not mix. The mean term is then the mean
    of the networks' mean terms, while the regression's linear kernel becomes the mean of
    theirs: a closer estimate of the expected kernel over random networks (RFAD, Loo et al.,
    NeurIPS 2022, which concatenates random networks' features for the same reason). The
    cost grows about in proportion.
    `feature_blocks` "all" (a ConvNet's) makes every network's embedding `all_block_features`
    of its blocks' outputs instead of the last block's alone.
    `lr_schedule` "cosine" anneals the image learning rate from `lr_img` to 0 over the run.
    `augmentation` "per-class" (DM's) draws one DSA transformation per class, the same for the
    class's real and synthetic images; "shared" draws one per network for all classes, so
    that the terms that compare classes (regression, discrimination) cannot tell the classes
    apart by the transformation each was given.
    `range_projection` "every-step" clamps the images onto the valid pixel range [0, 1] after
    every optimiser step (projected gradient descent), so that the images optimised are the
    ones written; "at-end" (DM's) leaves them free and the set file clamps them.

    Optional terms added to that loss: `mmd_weight` times `gaussian_mmd_gap` (with
    `mmd_bandwidth`) of the same embeddings (matching their whole distribution rather than
    only its mean, as MMD-based DM variants such as M3D do); `attention_weight` times
    DataDAM's spatial attention matching (Sajedi et al., ICCV 2023): per class and per ConvNet
    block, the squared distance between the mean `spatial_attention` maps of the real and the
    synthetic images; `discrimination_weight` times `centre_discrimination` of the embeddings
    (the synthetic class centres must classify the real images); `regression_weight` times
    `kernel_regression_loss` (ridge `regression_ridge`) of the same embeddings (a kernel
    regression on the synthetic embeddings must predict the real images' labels);
    `pool_weight` times the same regression loss on the embeddings of a `SyntheticModelPool`
    network instead of the random one (FRePo: `pool_size` networks, used in turn, each trained
    one step on the synthetic set after its use and re-drawn after `pool_steps` steps; on the
    first `pool_real` of each class's real images of the iteration).

    With `trained_nets` > 0 the embedding networks are not all random: IDM's model sampling
    (Zhao et al., CVPR 2023). `trained_snapshots` trains that many networks on real images for
    `trained_steps` steps, keeping their weights every `snapshot_every` steps, and each
    iteration uses, with probability `trained_share`, a random one of those snapshots instead
    of a fresh random network. With a snapshot, IDM's class-aware term is added too:
    `ce_weight` times the snapshot's accuracy on real images times the summed per-class mean
    cross-entropy of its classifier on the (augmented) synthetic images, pushing each image to
    be recognised as its class.

    The result is quantised for the set file: de-normalised, clamped to [0, 1] and rounded to
    the nearest of the 256 uint8 levels. With `return_float` the float normalised images are
    returned too (as a second value)."""
    from tqdm.auto import tqdm

    _check_ipc(dataset, ipc)
    if embedding_nets < 1:
        raise GenddError(f"embedding_nets must be at least 1, not {embedding_nets}")
    if embedding_nets > 1 and trained_nets > 0:
        raise GenddError("trained networks (trained_nets) take one embedding network, "
                         "not embedding_nets > 1")
    _check_choice("learning rate schedule", lr_schedule, LR_SCHEDULES)
    _check_choice("feature_blocks", feature_blocks, FEATURE_BLOCKS)
    _check_choice("augmentation", augmentation, AUGMENTATION_DRAWS)
    _check_choice("range_projection", range_projection, RANGE_PROJECTIONS)
    device = default_device()
    amp = autocast_dtype(device, True)
    g = torch.Generator().manual_seed(int(seed))
    k = dataset.num_classes
    if init is None:
        init_idx = random_indices(dataset, ipc, seed)
        start, labels = dataset.train_images[init_idx], dataset.train_labels[init_idx].clone()
    else:
        check_images(init.images, init.labels, dataset, normalised=False)
        init = init.sorted_by_class()
        expected = torch.arange(k).repeat_interleave(ipc)
        if len(init.labels) != len(expected) or not torch.equal(init.labels, expected):
            raise GenddError(f"the initial set must hold {ipc} images of each of the {k} classes")
        start, labels = init.images, init.labels.clone()
    syn = dataset.normalize(start).to(device).requires_grad_(True)
    pixel_lo, pixel_hi = (b.to(device) for b in normalised_range(dataset.mean, dataset.std))
    real_by_class = [_class_indices(dataset, c) for c in range(k)]
    real_norm = dataset.normalize(dataset.train_images)  # the whole set, normalised once
    opt = torch.optim.SGD([syn], lr=lr_img, momentum=momentum)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations + 1)
                if lr_schedule == "cosine" else None)
    protocol = challenge_protocol(model=model)
    params = protocol.dsa_params
    # The networks, re-drawn in place every iteration, so that the embedding is compiled once
    # per call rather than once per iteration.
    nets = [init_network(protocol, dataset, 0).to(device).train().requires_grad_(False)
            for _ in range(embedding_nets)]
    net = nets[0]  # the one a trained snapshot is loaded into
    # What reads the blocks' feature maps, which only a ConvNet gives out.
    uses_maps = [name for name, used in (
        ("attention matching", attention_weight > 0),
        ("embedding with every block's features", feature_blocks == "all")) if used]
    if uses_maps and not hasattr(net, "embed_with_maps"):
        raise GenddError(f"{uses_maps[0]} needs a ConvNet, not '{model}'")
    net_scale = embedding_nets ** -0.5  # 1.0 (exactly) for one network

    def embed_one(n, x):
        """Network n's embedding, and with the attention term each block's attention maps."""
        with _autocast(device, amp):
            if not uses_maps:
                return n.embed(x).float(), []
            flat, maps = n.embed_with_maps(x)
            maps = [m.float() for m in maps]
            flat = all_block_features(maps) if feature_blocks == "all" else flat.float()
            return flat, ([spatial_attention(m) for m in maps] if attention_weight > 0 else [])

    def embed(x):
        """`embed_one` of every network, the embeddings side by side and the maps listed."""
        parts = [embed_one(n, x) for n in nets]
        return (torch.cat([f for f, _ in parts], 1) * net_scale,
                [m * net_scale for _, maps in parts for m in maps])

    embed = compiled(embed, device)
    snapshots = []
    if trained_nets > 0:
        pool_g = torch.Generator().manual_seed(seed_from(g))
        snapshots = trained_snapshots(dataset, real_norm, trained_nets, trained_steps,
                                      snapshot_every, pool_g, model)
    syn_labels = labels.to(device)
    pool = None
    if pool_weight > 0:
        pool_g = torch.Generator().manual_seed(seed_from(g))
        pool = SyntheticModelPool(protocol, dataset, pool_size, pool_steps, pool_g, device,
                                  dsa_strategy)

    def network_loss(it: int) -> torch.Tensor:
        """The loss of iteration `it` under a newly drawn network, real images and DSA draw."""
        snapshot_acc = None
        if snapshots and float(torch.rand((), generator=g)) < trained_share:
            state, snapshot_acc = snapshots[int(torch.randint(len(snapshots), (1,), generator=g))]
            net.load_state_dict(state)
        else:
            for n in nets:
                reinit_network_(n, protocol, dataset, seed_from(g))
        reals, syns = [], []
        shared_seed = seed_from(g) if augmentation == "shared" else None
        for c in range(k):
            idx = real_by_class[c]
            pick = idx[torch.randperm(len(idx), generator=g)[:batch_real]]
            aug_seed = shared_seed if shared_seed is not None else seed_from(g)
            reals.append(dsa(real_norm[pick].to(device), torch.Generator().manual_seed(aug_seed),
                             dsa_strategy, params, siamese=True))
            syns.append(dsa(syn[c * ipc:(c + 1) * ipc], torch.Generator().manual_seed(aug_seed),
                            dsa_strategy, params, siamese=True))
        # One forward pass for all classes: ConvNet (instance norm) embeds each image on its
        # own, so this equals the per-class passes of the DM code.
        sizes = [len(r) for r in reals]
        with torch.no_grad():
            f_real, a_real = embed(torch.cat(reals))
        f_syn, a_syn = embed(torch.cat(syns))
        f_real_c, f_syn_c = f_real.split(sizes), f_syn.split(ipc)  # per class
        loss = class_mean_gap(f_real_c, f_syn_c)
        if mmd_weight > 0:
            loss = loss + mmd_weight * gaussian_mmd_gap(f_real_c, f_syn_c, mmd_bandwidth)
        if discrimination_weight > 0:
            loss = loss + discrimination_weight * centre_discrimination(f_real_c, f_syn_c)
        if regression_weight > 0:
            loss = loss + regression_weight * kernel_regression_loss(f_real_c, f_syn_c,
                                                                     regression_ridge)
        if pool is not None:
            pool_net = pool.nets[it % pool_size].requires_grad_(False)
            pool_reals = [r[:pool_real] for r in reals]
            with torch.no_grad():
                p_real = pool_net.embed(torch.cat(pool_reals))
            p_syn = pool_net.embed(torch.cat(syns))
            p_sizes = [len(r) for r in pool_reals]
            loss = loss + pool_weight * kernel_regression_loss(p_real.split(p_sizes),
                                                               p_syn.split(ipc), regression_ridge)
            pool_net.requires_grad_(True)
        for ar, as_ in zip(a_real, a_syn):
            loss = loss + attention_weight * class_mean_gap(ar.split(sizes), as_.split(ipc))
        if ce_weight > 0 and snapshot_acc is not None:
            # The mean over all images times k: the sum over classes of each class's mean.
            ce = F.cross_entropy(net.classifier(f_syn), syn_labels) * k
            loss = loss + ce_weight * snapshot_acc * ce
        return loss

    for it in tqdm(range(iterations + 1), desc="DM", disable=not progress, leave=False):
        opt.zero_grad(set_to_none=True)
        for _ in range(nets_per_iteration):  # gradients summed over the networks
            (network_loss(it) / nets_per_iteration).backward()
        opt.step()
        if range_projection == "every-step":
            with torch.no_grad():
                syn.clamp_(pixel_lo, pixel_hi)
        if schedule is not None:
            schedule.step()
        if pool is not None:
            pool.step(it % pool_size, syn, syn_labels)
    images = syn.detach().cpu()
    started_from = "random real" if init is None else init.metadata.get("generator", "a set")
    meta = _metadata(dataset, "dm", ipc, seed, iterations=iterations, init=started_from,
                     lr_img=lr_img, batch_real=batch_real, model=model, dsa_strategy=dsa_strategy,
                     attention_weight=attention_weight, mmd_weight=mmd_weight,
                     **({"nets_per_iteration": nets_per_iteration}
                        if nets_per_iteration > 1 else {}),
                     **({"embedding_nets": embedding_nets} if embedding_nets > 1 else {}),
                     **({"feature_blocks": feature_blocks} if feature_blocks != "last" else {}),
                     **({"lr_schedule": lr_schedule} if lr_schedule != "constant" else {}),
                     **({"augmentation": augmentation} if augmentation != "per-class" else {}),
                     **({"range_projection": range_projection}
                        if range_projection != "at-end" else {}),
                     **({"discrimination_weight": discrimination_weight}
                        if discrimination_weight > 0 else {}),
                     **({"regression_weight": regression_weight} if regression_weight > 0 else {}),
                     **({"regression_ridge": regression_ridge}
                        if regression_weight > 0 or pool_weight > 0 else {}),
                     **({"mmd_bandwidth": mmd_bandwidth} if mmd_weight > 0 else {}),
                     **({"pool_weight": pool_weight, "pool_size": pool_size,
                         "pool_steps": pool_steps, "pool_real": pool_real} if pool_weight > 0 else {}),
                     **({"trained_nets": trained_nets, "trained_steps": trained_steps,
                         "snapshot_every": snapshot_every, "trained_share": trained_share,
                         "ce_weight": ce_weight} if trained_nets > 0 else {}),
                     quantisation="denormalise, clamp to [0,1], round to uint8")
    dset = DistilledSet(denormalize(images, dataset.mean, dataset.std), labels, meta)
    return (dset, images) if return_float else dset

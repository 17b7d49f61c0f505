"""The evaluator: train fresh networks on a (distilled) set and report top-1 accuracy on the full
real test set, exactly as the ECCV 2024 Dataset Distillation Challenge does
(docs/PROTOCOL.md).

The challenge protocol, reproduced here:
- ConvNet depth 3, width 128, instance norm (GroupNorm(C, C)), ReLU, 2x2 average pooling, one
  linear head; PyTorch's default initialisation; a fresh network each round.
- SGD, lr 0.01, momentum 0.9, weight decay 5e-4, batch 256, shuffled, last batch kept.
- `for ep in range(1000 + 1)`: 1001 passes over the set; after pass 501 (= 1000 // 2 + 1) the
  lr drops x0.1 and the optimiser is re-created (so the momentum buffer restarts), as there.
- DSA `color_crop_cutout_flip_scale_rotate`, mode 'S', on every training batch.
- Hard labels, cross-entropy; inputs normalised with the data set's mean/std.
- 3 rounds; score = top-1 on the whole test set; mean (and population std, as np.std) over rounds.

Speed (`Protocol.fast`, the default) never changes that recipe; it changes how the arithmetic is
done: bf16 autocast where the hardware supports it (fp32 master weights and optimiser state, as
in mixed-precision training), the training step compiled with `torch.compile` (fusing norm,
ReLU and pooling; falls back to eager if compiling fails; by default on the CPU only, see
`runtime.compile_enabled`), a glibc allocator that keeps freed memory instead of page-faulting
it back every step, and large inference-mode test batches. `fast=False` is the straightforward
formulation: fp32, eager, NCHW, GroupNorm(C, C), test batches of 256 (what was tried for speed
and not kept: docs/LOG.md#evaluator-speed).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gendd.augment import DSA_STRATEGY, DSAParams, dsa
from gendd.data.base import ImageDataset
from gendd.errors import GenddError
from gendd.models.zoo import build_model, check_model
from gendd.runtime import (autocast, autocast_dtype, batched, compiled, default_device, seed_from,
                           tune_allocator)
from gendd.sets import DistilledSet

PROTOCOL_NAME = "eccv2024-challenge"
# Tolerance (in [0, 1] pixel units) for float submissions whose de-normalised values stray
# outside [0, 1] through rounding.
RANGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Protocol:
    model: str = "convnet"
    epochs: int = 1000  # nominal; the challenge's loop makes epochs + 1 passes
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    lr_decay_factor: float = 0.1  # once, after pass epochs // 2 + 1, optimiser re-created
    dsa_strategy: str = DSA_STRATEGY
    dsa_params: DSAParams = field(default_factory=DSAParams)
    rounds: int = 3
    fast: bool = True  # same recipe, faster arithmetic (see module docstring)
    test_batch_size: int = 256  # the reference's; the fast path uses bigger ones

    @property
    def train_passes(self) -> int:
        return self.epochs + 1

    @property
    def lr_decay_epoch(self) -> int:
        """Index of the pass after which the lr is multiplied by lr_decay_factor."""
        return self.epochs // 2 + 1

    def lr_at(self, epoch: int) -> float:
        return self.lr * (self.lr_decay_factor if epoch > self.lr_decay_epoch else 1.0)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(name=PROTOCOL_NAME, train_passes=self.train_passes,
                 lr_decay_epoch=self.lr_decay_epoch, dsa_mode=self.dsa_params.mode)
        return d


def challenge_protocol(**overrides) -> Protocol:
    """The challenge's protocol, with any field overridden (e.g. epochs=300, model='vgg11')."""
    if "model" in overrides:
        check_model(overrides["model"])
    return Protocol(**overrides)


def make_loss_fn(net: nn.Module, device: torch.device, fast: bool):
    """(x, y) -> mean cross-entropy of `net`: fp32 eager when not fast; otherwise under
    autocast and, where possible, compiled (same function, fused kernels)."""
    amp = autocast_dtype(device, fast)

    def loss_fn(x, y):
        with autocast(device, amp):
            return F.cross_entropy(net(x), y)

    return compiled(loss_fn, device) if fast else loss_fn


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# Training and testing one network


def _sgd(params, protocol: Protocol, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=protocol.momentum,
                           weight_decay=protocol.weight_decay)


def train_network(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  protocol: Protocol | None = None, generator: torch.Generator | int | None = None,
                  progress: bool = True, device: torch.device | str | None = None) -> nn.Module:
    """Train `net` on normalised float images with hard labels under `protocol` (SGD with the
    challenge's schedule and DSA). `generator` (or an int seed) drives the batch order and the
    augmentation. Returns the trained network (on `device`, by default cuda when available).

    General on purpose: any classifier, any number of images, any protocol overrides."""
    protocol = protocol or challenge_protocol()
    device = torch.device(device) if device is not None else default_device()
    g = generator if isinstance(generator, torch.Generator) else \
        torch.Generator().manual_seed(0 if generator is None else int(generator))
    if protocol.fast and device.type == "cpu":
        tune_allocator()
    net = net.to(device)
    loss_fn = make_loss_fn(net, device, protocol.fast)
    x_all, y_all = images.float().to(device), labels.long().to(device)
    n = len(y_all)
    net.train()
    opt = _sgd(net.parameters(), protocol, protocol.lr_at(0))
    bar = _progress(protocol.train_passes, "train", progress)
    for ep in range(protocol.train_passes):
        order = torch.randperm(n, generator=g).to(device)
        for start in range(0, n, protocol.batch_size):
            idx = order[start:start + protocol.batch_size]
            x = dsa(x_all[idx], g, protocol.dsa_strategy, protocol.dsa_params)
            loss = loss_fn(x, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if ep == protocol.lr_decay_epoch:  # the challenge re-creates the optimiser here
            opt = _sgd(net.parameters(), protocol, protocol.lr_at(ep + 1))  # the next pass's lr
        bar.update(1)
    bar.close()
    return net


def network_outputs(net: nn.Module, images: torch.Tensor, output=None, batch_size: int = 2048,
                    fast: bool = True) -> torch.Tensor:
    """`output(x)` (by default `net(x)`) of normalised float images in batches, with `net` in
    eval mode and the fast path's precision; float32 results on the CPU."""
    device = next(net.parameters()).device
    amp = autocast_dtype(device, fast)
    output = output or net
    was_training = net.training
    net.eval()

    def run(x):
        with autocast(device, amp):
            return output(x.to(device, torch.float32)).float()

    try:
        return batched(run, images, batch_size)
    finally:
        net.train(was_training)


def predict(net: nn.Module, images: torch.Tensor, batch_size: int = 2048,
            fast: bool = True) -> torch.Tensor:
    """Class predictions (int64) of `net` on normalised float images."""
    return network_outputs(net, images, batch_size=batch_size, fast=fast).argmax(1)


def test_accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 2048, fast: bool = True) -> float:
    """Top-1 accuracy in percent of `net` on normalised float images."""
    pred = predict(net, images, batch_size=batch_size, fast=fast)
    return 100.0 * float((pred == labels.cpu()).double().mean())


test_accuracy.__test__ = False  # not a pytest test, though named like one


# ---------------------------------------------------------------------------------------------
# Checking inputs


def check_images(images: torch.Tensor, labels: torch.Tensor, dataset: ImageDataset,
                 normalised: bool) -> tuple[list[int], list[str]]:
    """Validate a training set against `dataset`; returns (counts per class, flags).
    Raises GenddError (one line) on anything that cannot be evaluated faithfully."""
    k = dataset.num_classes
    if images.ndim != 4:
        raise GenddError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise GenddError("the set is empty")
    if c != dataset.channels or (h, w) != dataset.image_size:
        raise GenddError(f"images are {c}x{h}x{w} but {dataset.name} images are "
                         f"{dataset.channels}x{dataset.image_size[0]}x{dataset.image_size[1]}")
    if labels.shape != (n,):
        raise GenddError(f"{n} images but labels of shape {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        bad = sorted({int(v) for v in labels[(labels < 0) | (labels >= k)].tolist()})[:5]
        raise GenddError(f"labels {bad} outside the {k} classes of {dataset.name} (0..{k - 1})")
    counts = torch.bincount(labels, minlength=k).tolist()
    missing = [i for i, cnt in enumerate(counts) if cnt == 0]
    if missing:
        names = ", ".join(f"{i} ({dataset.class_names[i]})" for i in missing[:5])
        raise GenddError(f"the set has no images of class(es) {names}")
    if normalised:
        if not torch.is_floating_point(images):
            raise GenddError(f"normalised images must be a float tensor, got {images.dtype}")
        if not bool(torch.isfinite(images).all()):
            raise GenddError("images contain NaN or infinite values")
        m = torch.tensor(dataset.mean).view(1, -1, 1, 1)
        s = torch.tensor(dataset.std).view(1, -1, 1, 1)
        pix = images.double() * s + m
        lo, hi = float(pix.min()), float(pix.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise GenddError(f"de-normalised pixel values span [{lo:.3f}, {hi:.3f}], outside "
                             f"[0, 1]: were the images normalised with {dataset.name}'s mean "
                             f"{dataset.mean} and std {dataset.std}?")
    flags = []
    if len(set(counts)) > 1:
        flags.append("unequal_images_per_class")
    return counts, flags


def load_submission(path: str | Path, dataset: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A challenge submission: a normalised float N x C x H x W tensor saved with torch.save,
    ordered class by class with N / num_classes images each; labels are implicit."""
    path = Path(path)
    if not path.is_file():
        raise GenddError(f"{path}: no such submission file")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GenddError(f"{path}: not a readable tensor file ({msg})") from None
    if not isinstance(data, torch.Tensor):
        raise GenddError(f"{path}: holds a {type(data).__name__}, not a tensor")
    if data.ndim != 4:
        raise GenddError(f"{path}: tensor of shape {tuple(data.shape)}, expected N x C x H x W")
    if not torch.is_floating_point(data):
        raise GenddError(f"{path}: tensor of dtype {data.dtype}, expected normalised floats")
    k = dataset.num_classes
    if data.shape[0] == 0 or data.shape[0] % k:
        raise GenddError(f"{path}: {data.shape[0]} images is not a multiple of the {k} classes "
                         f"of {dataset.name}")
    labels = torch.arange(k).repeat_interleave(data.shape[0] // k)
    return data.float(), labels


# ---------------------------------------------------------------------------------------------
# Whole evaluations


def _round_seeds(seed: int, rounds: int) -> list[tuple[int, int]]:
    """(init seed, data/augmentation seed) for each round, derived from `seed`."""
    g = torch.Generator().manual_seed(int(seed))
    return [(seed_from(g), seed_from(g)) for _ in range(rounds)]


def init_network(protocol: Protocol, dataset: ImageDataset, init_seed: int) -> nn.Module:
    """A freshly initialised evaluation network (PyTorch default init, seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return build_model(protocol.model, dataset.channels, dataset.num_classes,
                           dataset.image_size)


def reinit_network_(net: nn.Module, protocol: Protocol, dataset: ImageDataset,
                    init_seed: int) -> nn.Module:
    """Give `net` (built by `init_network` for the same protocol and dataset) in place the
    weights `init_network` draws for `init_seed`. Reusing one module keeps a compiled forward
    valid: a new module each time would be compiled anew."""
    with torch.no_grad():
        net.load_state_dict(init_network(protocol, dataset, init_seed).state_dict())
    return net


def train_and_test_rounds(images: torch.Tensor, labels: torch.Tensor, dataset: ImageDataset,
                          protocol: Protocol, seed: int = 0, progress: bool = True,
                          device: torch.device | None = None
                          ) -> tuple[list[float], list[torch.Tensor]]:
    """Accuracy (percent) of each round, a fresh network trained on the normalised images, and
    its test-set predictions (kept for per-class accuracy and the confusion matrix)."""
    device = device or default_device()
    test_x = dataset.normalize(dataset.test_images)
    test_y = dataset.test_labels
    accs, preds = [], []
    for r, (init_seed, data_seed) in enumerate(_round_seeds(seed, protocol.rounds)):
        net = init_network(protocol, dataset, init_seed)
        g = torch.Generator().manual_seed(data_seed)
        if progress and protocol.rounds > 1:
            print(f"round {r + 1}/{protocol.rounds}", flush=True)
        net = train_network(net, images, labels, protocol, g, progress, device)
        bs = 2048 if protocol.fast else protocol.test_batch_size
        pred = predict(net, test_x, batch_size=bs, fast=protocol.fast)
        accs.append(100.0 * float((pred == test_y.cpu()).double().mean()))  # test_accuracy's
        preds.append(pred)
    return accs, preds


def evaluate_tensors(images: torch.Tensor, labels: torch.Tensor, dataset: ImageDataset,
                     protocol: Protocol | None = None, seed: int = 0, progress: bool = True,
                     source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate normalised float images with hard labels; returns the JSON-able result."""
    protocol = protocol or challenge_protocol()
    labels = labels.long()
    counts, flags = check_images(images, labels, dataset, normalised=True)
    device = default_device()
    t0 = time.perf_counter()
    accs, preds = train_and_test_rounds(images.float(), labels, dataset, protocol, seed,
                                        progress, device)
    wall = time.perf_counter() - t0
    k = dataset.num_classes
    test_y = dataset.test_labels.long().cpu()
    # rows: true class, columns: predicted; summed over rounds (the same test set in each)
    confusion = sum((torch.bincount(test_y * k + p, minlength=k * k) for p in preds),
                    torch.zeros(k * k, dtype=torch.long)).view(k, k)
    per_class = 100.0 * confusion.diag().double() / confusion.sum(1).clamp(min=1)
    return {
        "accuracy": {"mean": float(np.mean(accs)), "std": float(np.std(accs)),
                     "rounds": [float(a) for a in accs]},
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
        "model": protocol.model,
        "epochs": protocol.epochs,
        "protocol": protocol.to_dict(),
        "wall_time_s": round(wall, 2),
        "dataset": dataset.name,
        "num_images": int(len(labels)),
        "counts_per_class": counts,
        "flags": flags,
        "seed": int(seed),
        "device": device.type,
        "torch_threads": torch.get_num_threads(),
        "source": source or {},
    }


def evaluate_set(dset: DistilledSet, dataset: ImageDataset, protocol: Protocol | None = None,
                 seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Evaluate a gendd set (uint8 images, int64 labels) under `protocol` (the challenge's by
    default). Raises GenddError if the set does not fit `dataset`."""
    counts, _ = check_images(dset.images, dset.labels, dataset, normalised=False)
    meta_ds = dset.metadata.get("dataset")
    if isinstance(meta_ds, str) and meta_ds and meta_ds != dataset.name:
        raise GenddError(f"the set was made from '{meta_ds}', not '{dataset.name}'")
    return evaluate_tensors(dataset.normalize(dset.images), dset.labels, dataset, protocol, seed,
                            progress, source={"kind": "set", "metadata": dset.metadata})


def summary_line(result: dict[str, Any]) -> str:
    a = result["accuracy"]
    rounds = ", ".join(f"{v:.2f}" for v in a["rounds"])
    flags = f"  [{', '.join(result['flags'])}]" if result["flags"] else ""
    return (f"{result['dataset']} {result['model']} {result['epochs']} epochs: "
            f"{a['mean']:.2f} ± {a['std']:.2f} % over {len(a['rounds'])} round(s) ({rounds}) "
            f"in {result['wall_time_s']:.0f} s{flags}")

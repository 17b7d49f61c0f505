"""The loss terms of Distribution Matching and its variants (`baselines.distribution_matching`):
pure functions of embeddings. Each takes `real[c]` and `syn[c]`, class c's real and synthetic
vectors (one per row), and returns a scalar to minimise over the synthetic ones."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def class_mean_gap(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor]) -> torch.Tensor:
    """DM's loss: over classes, the squared distance between the mean real and the mean
    synthetic vector (`real[c]`, `syn[c]`: class c's vectors, one per row)."""
    return sum(((r.mean(0) - s.mean(0)) ** 2).sum() for r, s in zip(real, syn))


def gaussian_mmd_gap(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor],
                     bandwidth: float | Sequence[float] = 0.25) -> torch.Tensor:
    """Over classes, the part of the squared MMD between real and synthetic vectors that
    depends on the synthetic ones, with a Gaussian kernel whose variance is `bandwidth` times
    the median squared distance between the class's real vectors (over all pairs, each with
    itself included; detached; kept above 1e-12 for degenerate classes). Several bandwidths
    give the mean of their kernels (a multi-scale kernel)."""
    scales = [bandwidth] if isinstance(bandwidth, (int, float)) else list(bandwidth)
    total = 0.0
    for r, s in zip(real, syn):
        median = torch.cdist(r, r).pow(2).median().detach()
        d_ss, d_rs = torch.cdist(s, s).pow(2), torch.cdist(r, s).pow(2)
        two_vars = [2 * (scale * median).clamp_min(1e-12) for scale in scales]
        k_ss = sum(torch.exp(-d_ss / v).mean() for v in two_vars) / len(scales)
        k_rs = sum(torch.exp(-d_rs / v).mean() for v in two_vars) / len(scales)
        total = total + k_ss - 2 * k_rs
    return total


def _part_labels(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """The class of each row of `torch.cat(parts)`, `parts[c]` holding class c's vectors."""
    device = parts[0].device
    return torch.arange(len(parts), device=device).repeat_interleave(
        torch.tensor([len(p) for p in parts], device=device))


def centre_discrimination(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor],
                          temperature: float = 0.1) -> torch.Tensor:
    """A nearest-centre classifier built from the synthetic vectors, scored on the real ones:
    the cross-entropy of classifying each real vector (`real[c]`: class c's) among the classes
    by its negative squared distance to each class's mean synthetic vector, scaled by
    `temperature` times the mean of those squared distances (detached, so that the loss does
    not depend on the embedding's scale). Unlike the per-class terms it couples the classes:
    it pulls each class's centre towards its real vectors and pushes it away from the real
    vectors of the classes it is confused with (CAFE's discrimination loss, Wang et al.,
    CVPR 2022, on distances instead of dot products)."""
    centres = torch.stack([s.mean(0) for s in syn])
    d2 = torch.cdist(torch.cat(list(real)), centres).pow(2)
    scale = (temperature * d2.mean()).detach().clamp_min(1e-12)
    return F.cross_entropy(-d2 / scale, _part_labels(real)) * len(real)


def kernel_regression_loss(real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor],
                           ridge: float = 1e-2) -> torch.Tensor:
    """Kernel ridge regression from the synthetic vectors, scored on the real ones: the
    regression of centred one-hot labels (one-hot minus 1/classes) on the synthetic vectors
    with the linear kernel, ridge `ridge` times the mean of the kernel's diagonal (so that the
    loss does not depend on the embedding's scale), predicts each real vector's label; the
    loss is the squared error summed over classes, averaged over the real vectors and
    multiplied by the number of classes. Like `centre_discrimination` it couples the classes,
    but every synthetic vector is a support point rather than only the class centres (the
    loss of KIP, Nguyen et al., ICLR 2021, and FRePo, Zhou et al., NeurIPS 2022, here on
    the embeddings of DM's networks)."""
    k = len(real)
    s, r = torch.cat(list(syn)), torch.cat(list(real))

    def targets(parts):
        return F.one_hot(_part_labels(parts), k).float() - 1.0 / k

    k_ss, k_rs = s @ s.T, r @ s.T
    lam = ridge * k_ss.diagonal().mean()
    alpha = torch.linalg.solve(k_ss + lam * torch.eye(len(s), device=s.device), targets(syn))
    return ((k_rs @ alpha - targets(real)) ** 2).sum(1).mean() * k


def spatial_attention(maps: torch.Tensor, power: int = 4) -> torch.Tensor:
    """DataDAM's spatial attention of feature maps (N, C, H, W): the channel mean of
    |activation|^power at each position, flattened to (N, H*W) and scaled to unit length."""
    return F.normalize(maps.abs().pow(power).mean(1).flatten(1), dim=1)


def all_block_features(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """One vector per image from every block's feature maps (`maps[b]`: (N, C_b, H_b, W_b),
    the last block's the smallest): each block's maps average-pooled to the last block's size,
    flattened, scaled by 1/sqrt(blocks) and put side by side. Its linear kernel is the mean of
    the blocks' kernels, so early blocks' local patterns count beside the last block's."""
    size = maps[-1].shape[-2:]
    scale = len(maps) ** -0.5
    return torch.cat([F.adaptive_avg_pool2d(m, size).flatten(1) for m in maps], 1) * scale

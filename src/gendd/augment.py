"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021) as the ECCV 2024 challenge
uses it: strategy `color_crop_cutout_flip_scale_rotate` in mode 'S' (one transformation, chosen at
random, per batch, applied with per-sample random parameters).

Every function takes a `torch.Generator` (on the CPU) for its random draws, so runs are seeded
and reproducible on any device; parameters are drawn on the CPU and moved to the images' device.
All operations are vectorised over the batch and differentiable with respect to the images
(the distribution-matching baseline back-propagates through them).

`siamese=True` draws one set of parameters and applies it to every image of the batch; calling
twice with generators seeded alike applies the same transformation to two batches (as DM does
for its real and synthetic batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """The challenge's `ParamDiffAug`."""

    mode: str = "S"  # 'S': one op per batch; 'M': every op in turn
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0  # degrees, +-
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5  # the cut-out square is 0.5 x 0.5 of the image
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def _uniform(n: int, g: torch.Generator, siamese: bool, like: torch.Tensor) -> torch.Tensor:
    """n draws from U[0, 1) (one repeated n times when siamese), on `like`'s device/dtype."""
    u = torch.rand(1 if siamese else n, generator=g)
    return u.expand(n).to(device=like.device, dtype=like.dtype)


def _randint(low: int, high: int, n: int, g: torch.Generator, siamese: bool,
             device) -> torch.Tensor:
    r = torch.randint(low, high, (1 if siamese else n,), generator=g)
    return r.expand(n).to(device)


def rand_brightness(x, p: DSAParams, g, siamese=False):
    r = _uniform(x.shape[0], g, siamese, x).view(-1, 1, 1, 1)
    return x + (r - 0.5) * p.brightness


def rand_saturation(x, p: DSAParams, g, siamese=False):
    # On one-channel images x equals its channel mean, so this is the identity (as there).
    r = _uniform(x.shape[0], g, siamese, x).view(-1, 1, 1, 1)
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * (r * p.saturation) + m


def rand_contrast(x, p: DSAParams, g, siamese=False):
    r = _uniform(x.shape[0], g, siamese, x).view(-1, 1, 1, 1)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (r + p.contrast) + m


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rand_scale(x, p: DSAParams, g, siamese=False):
    n, ratio = x.shape[0], p.ratio_scale
    sx = _uniform(n, g, siamese, x) * (ratio - 1.0 / ratio) + 1.0 / ratio
    sy = _uniform(n, g, siamese, x) * (ratio - 1.0 / ratio) + 1.0 / ratio
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    return _affine(x, theta)


def rand_rotate(x, p: DSAParams, g, siamese=False):
    n = x.shape[0]
    a = (_uniform(n, g, siamese, x) - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def rand_flip(x, p: DSAParams, g, siamese=False):
    r = _uniform(x.shape[0], g, siamese, x).view(-1, 1, 1, 1)
    return torch.where(r < p.prob_flip, x.flip(3), x)


def rand_crop(x, p: DSAParams, g, siamese=False):
    """Translate by up to +-ratio_crop_pad of the size (integer pixels), filling with zeros."""
    n, _, h, w = x.shape
    sh, sw = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
    tx = _randint(-sh, sh + 1, n, g, siamese, x.device)
    ty = _randint(-sw, sw + 1, n, g, siamese, x.device)
    # Source index of each output pixel in the image padded by one zero pixel; indices falling
    # outside are clamped onto that zero border.
    rows = (torch.arange(h, device=x.device) + tx[:, None] + 1).clamp(0, h + 1)  # n x h
    cols = (torch.arange(w, device=x.device) + ty[:, None] + 1).clamp(0, w + 1)  # n x w
    xp = F.pad(x, [1, 1, 1, 1])
    b = torch.arange(n, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def rand_cutout(x, p: DSAParams, g, siamese=False):
    """Zero a (ratio_cutout * size) square centred at a random pixel, clipped at the borders."""
    n, _, h, w = x.shape
    ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
    ox = _randint(0, h + (1 - ch % 2), n, g, siamese, x.device)
    oy = _randint(0, w + (1 - cw % 2), n, g, siamese, x.device)
    x0, x1 = (ox - ch // 2).clamp(0, h - 1), (ox - ch // 2 + ch - 1).clamp(0, h - 1)
    y0, y1 = (oy - cw // 2).clamp(0, w - 1), (oy - cw // 2 + cw - 1).clamp(0, w - 1)
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_r = (r >= x0[:, None]) & (r <= x1[:, None])  # n x h
    in_c = (c >= y0[:, None]) & (c <= y1[:, None])  # n x w
    keep = ~(in_r[:, :, None] & in_c[:, None, :])
    return x * keep[:, None].to(x.dtype)


AUGMENT_FNS = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "crop": (rand_crop,),
    "cutout": (rand_cutout,),
    "flip": (rand_flip,),
    "scale": (rand_scale,),
    "rotate": (rand_rotate,),
}


def choose_ops(strategy: str, params: DSAParams, g: torch.Generator) -> list[str]:
    """The transformations one call applies: in mode 'S' one of the strategy's, at random."""
    ops = [s for s in strategy.split("_") if s]
    unknown = [s for s in ops if s not in AUGMENT_FNS]
    if unknown:
        raise ValueError(f"unknown DSA transformation(s): {', '.join(unknown)}")
    if params.mode == "S":
        return [ops[int(torch.randint(len(ops), (1,), generator=g))]]
    if params.mode == "M":
        return ops
    raise ValueError(f"unknown DSA mode '{params.mode}'")


def dsa(x: torch.Tensor, generator: torch.Generator, strategy: str = DSA_STRATEGY,
        params: DSAParams = DSAParams(), siamese: bool = False) -> torch.Tensor:
    """Augment a batch of normalised N x C x H x W images."""
    if strategy in ("", "none", "None"):
        return x
    for op in choose_ops(strategy, params, generator):
        for fn in AUGMENT_FNS[op]:
            x = fn(x, params, generator, siamese)
    return x.contiguous()

"""Prototype seeding: start sampling from k-means centres of the real training latents.

Per class, the real latents are clustered into as many centres as images are wanted; each
centre is noised part of the way (`strength`) and denoised with the class's guidance, so every
image stays near a mode of the class (as D4M does with Stable Diffusion) while the denoiser
gives it the detail an average lacks.
"""

from __future__ import annotations

import torch

from gendd.runtime import derived_seed


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator,
           iterations: int = 30) -> torch.Tensor:
    """Lloyd's k-means with k-means++ initialisation on rows of `points` (n, d): (k, d) centres.
    With k > n, points are repeated (every point becomes a centre, some several times)."""
    n = len(points)
    x = points.reshape(n, -1).double()
    if k >= n:
        return x[torch.arange(k) % n].to(points.dtype)
    centres = x[torch.randint(n, (1,), generator=generator)]
    dist = torch.cdist(x, centres).squeeze(1).pow(2)
    for _ in range(1, k):
        pick = torch.multinomial(dist / dist.sum(), 1, generator=generator)
        centres = torch.cat([centres, x[pick]])
        dist = torch.minimum(dist, (x - x[pick]).pow(2).sum(1))
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        # An empty cluster keeps its centre rather than collapsing onto another.
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres.to(points.dtype)


def class_prototypes(latents: torch.Tensor, labels: torch.Tensor, label: int, k: int,
                     seed: int) -> torch.Tensor:
    """`k` k-means centres of the latents of class `label`, shaped like the latents."""
    members = latents[labels == label]
    if len(members) == 0:
        raise ValueError(f"no training latents of class {label}")
    g = torch.Generator().manual_seed(derived_seed(seed, label))
    return kmeans(members, k, g).reshape(k, *latents.shape[1:])

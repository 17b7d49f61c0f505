"""Fine-tuning the denoiser so that its own samples distil.

The stored refinement (`gendd.refine` against `gendd.real_statistics`) moves a sampled set's
pixels until, in random ConvNets, the set's embeddings match the run's stored statistics of the
real data. This moves the denoiser instead: each iteration samples a set from noise with the
run's sampler, decodes it, and lowers the same loss against one stored draw, with gradients
through the decoder and the last solver steps into the denoiser's weights (truncated
backpropagation through the sampler, as DRaFT-K does for rewards). The fine-tuned denoiser's
samples carry what that refinement adds, with no real data and no refinement at generation
time: `generate --time-budget` samples with it. Only the statistics are read, so the stage is
as data-free as `--refine stored`.
"""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from gendd.config import RefineConfig, RunConfig, SamplerConfig
from gendd.data.base import ImageDataset, normalize
from gendd.diffusion import sample_latents_differentiably, sampling_scheduler
from gendd.latent_model import LatentModel
from gendd.real_statistics import RealStatistics
from gendd.refine import (embedding_network, set_matching_loss, settings_at, stored_draws,
                          stored_settings)


def finetune_denoiser(model: LatentModel, stats: RealStatistics, cfg: RunConfig,
                      progress: bool = False) -> LatentModel:
    """`model` with a copy of its denoiser fine-tuned for `cfg.train.finetune_iterations`
    iterations (`cfg.train.finetune_*`; the loss of the stored refinement at `finetune_ipc`
    images per class, `cfg.refine`'s settings there; the run's sampler; the denoiser's own
    gradient clipping; noise seeded by `cfg.seed`). `model`'s denoiser is left as it was; the
    autoencoder, shared, is frozen."""
    train = cfg.train
    settings = stored_settings(settings_at(cfg.refine, train.finetune_ipc), stats)
    device = model.device
    denoiser = copy.deepcopy(model.denoiser).requires_grad_(True)
    tuned = LatentModel(model.autoencoder.requires_grad_(False), denoiser, model.geometry,
                        model.class_names, model.scheduler.config.prediction_type,
                        model.scheduler.config.beta_schedule)
    geometry = stats.geometry()
    net, embed = embedding_network(geometry, settings.feature_blocks, device)
    draws = stored_draws(stats, net, settings, device)
    scheduler = sampling_scheduler(model.scheduler, cfg.sampler.solver)
    labels = torch.arange(model.num_classes, device=device).repeat_interleave(train.finetune_ipc)
    noise = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(denoiser.parameters(), lr=train.finetune_lr)
    bar = tqdm(range(train.finetune_iterations), desc="finetune", disable=not progress,
               leave=False)
    for _ in bar:
        _, aug_seeds, points = next(draws)
        noise_rows = torch.randn((len(labels), *model.latent_shape), generator=noise).to(device)
        loss = sample_matching_loss(tuned, scheduler, noise_rows, labels, cfg.sampler,
                                    train.finetune_grad_steps, points, aug_seeds, embed,
                                    settings, geometry)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), cfg.denoiser.grad_clip)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.1f}")
    denoiser.requires_grad_(False)
    return tuned


def sample_matching_loss(model: LatentModel, scheduler, noise: torch.Tensor,
                         labels: torch.Tensor, sampler: SamplerConfig, grad_steps: int,
                         points: list[torch.Tensor], aug_seeds: list[int], embed,
                         settings: RefineConfig, geometry: ImageDataset) -> torch.Tensor:
    """The stored refinement's loss (`refine.set_matching_loss`) of the set that `model`
    samples from `noise` for `labels` (ordered by class, as many of each) with `sampler`'s
    steps and guidance, against one stored draw (`points`, `aug_seeds`); differentiable in the
    denoiser's weights through the last `grad_steps` solver steps and the decoder."""
    latents = sample_latents_differentiably(model.denoiser, scheduler, labels, noise,
                                            sampler.steps, sampler.guidance, model.null_class,
                                            grad_steps)
    pixels = (model.decode_unit_range(latents) + 1.0) * 127.5  # normalize takes 0..255
    return set_matching_loss(normalize(pixels, geometry.mean, geometry.std), points, aug_seeds,
                             embed, settings)

"""Diffusion maths: the noise schedule, the training loss, and guided sampling.

Schedulers come from diffusers; this module only wires them to a class-conditional denoiser
with a null class for classifier-free guidance.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       UniPCMultistepScheduler)
from diffusers.utils.torch_utils import randn_tensor

from gendd.errors import GenddError

NUM_TRAIN_TIMESTEPS = 1000

SOLVERS = {
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),  # ancestral, meant for all 1000 steps: the naive baseline
}


def training_scheduler(prediction_type: str, beta_schedule: str) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=beta_schedule,
                         prediction_type=prediction_type, clip_sample=False)


def check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise GenddError(f"unknown solver '{solver}' (known: {', '.join(SOLVERS)})")


def sampling_scheduler(train_scheduler: DDPMScheduler, solver: str):
    check_solver(solver)
    cls, extra = SOLVERS[solver]
    return cls.from_config(train_scheduler.config, **extra)


def draw_diffusion_noise(generator: torch.Generator, n: int,
                         latent_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The randomness of one training batch, drawn on the CPU from `generator`, so a step is a
    pure function of batch and seed whatever the device or the number of processes."""
    return {"noise": torch.randn((n, *latent_shape), generator=generator),
            "t": torch.randint(0, NUM_TRAIN_TIMESTEPS, (n,), generator=generator),
            "u_drop": torch.rand(n, generator=generator)}


def diffusion_loss(model, latents: torch.Tensor, labels: torch.Tensor, scheduler: DDPMScheduler,
                   noise: torch.Tensor, t: torch.Tensor, u_drop: torch.Tensor,
                   null_class: int, label_dropout: float) -> torch.Tensor:
    """Mean squared error of the denoiser's prediction (epsilon or v) at timesteps `t`; labels
    with `u_drop < label_dropout` are replaced by the null class (classifier-free guidance)."""
    cond = torch.where(u_drop < label_dropout, torch.full_like(labels, null_class), labels)
    noisy = scheduler.add_noise(latents, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    pred = model(noisy, t, class_labels=cond).sample
    return F.mse_loss(pred.float(), target.float())


def guided_prediction(model, x: torch.Tensor, t, labels: torch.Tensor, null_class: int,
                      guidance: float) -> torch.Tensor:
    """uncond + guidance * (cond - uncond), both passes in one batched forward."""
    if guidance == 1.0:
        return model(x, t, class_labels=labels).sample
    both = model(torch.cat([x, x]), t,
                 class_labels=torch.cat([labels, torch.full_like(labels, null_class)])).sample
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


@torch.inference_mode()
def sample_latents(model, scheduler, labels: torch.Tensor, latent_shape: tuple[int, ...],
                   steps: int, guidance: float, null_class: int,
                   generator: torch.Generator | list[torch.Generator],
                   init_latents: torch.Tensor | None = None, strength: float = 1.0,
                   dtype: torch.dtype = torch.float32,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw latents for `labels`. With `init_latents`, start from them noised to `strength`
    (1.0 = pure noise, 0.5 = half-way) and denoise from there (img2img / prototype seeding).
    `noise` (one row per label) fixes the starting noise; `generator` (one, or a list with one
    per label) drives ancestral steps and, without `noise`, the starting noise."""
    device = labels.device
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    if noise is None:
        noise = randn_tensor((len(labels), *latent_shape), generator=generator)
    noise = noise.to(device)
    if init_latents is None or strength >= 1.0:
        x = noise * scheduler.init_noise_sigma
    else:
        start = min(int(round(steps * (1.0 - strength))), steps - 1)
        timesteps = timesteps[start * scheduler.order:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start * scheduler.order)
        x = scheduler.add_noise(init_latents.to(device), noise, timesteps[:1].repeat(len(labels)))
    # Ancestral solvers draw fresh noise each step; deterministic ones take no generator.
    step_kwargs = ({"generator": generator}
                   if "generator" in inspect.signature(scheduler.step).parameters else {})
    for t in timesteps:
        x = solver_step(model, scheduler, x, t, labels, null_class, guidance, dtype, step_kwargs)
    return x


def solver_step(model, scheduler, x: torch.Tensor, t, labels: torch.Tensor, null_class: int,
                guidance: float, dtype: torch.dtype = torch.float32,
                step_kwargs: dict | None = None) -> torch.Tensor:
    """One guided solver step from `x` at timestep `t`."""
    model_in = scheduler.scale_model_input(x, t)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        pred = guided_prediction(model, model_in, t, labels, null_class, guidance)
    return scheduler.step(pred.float(), t, x, **(step_kwargs or {})).prev_sample


def sample_latents_differentiably(model, scheduler, labels: torch.Tensor, noise: torch.Tensor,
                                  steps: int, guidance: float, null_class: int,
                                  grad_steps: int) -> torch.Tensor:
    """`sample_latents` from pure `noise` with a deterministic solver, differentiable in the
    denoiser's weights through the last `grad_steps` steps only: the earlier steps run without
    a graph (truncated backpropagation through the sampler, as DRaFT-K does), which keeps the
    memory of one step per gradient step."""
    if isinstance(scheduler, DDPMScheduler):
        raise GenddError("fine-tuning through the sampler needs a deterministic solver (not ddpm)")
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        with torch.set_grad_enabled(i >= len(scheduler.timesteps) - grad_steps):
            x = solver_step(model, scheduler, x, t, labels, null_class, guidance)
    return x

"""Training the generator: the autoencoder, then the class-conditional denoiser on its latents.

Each stage resumes from its checkpoints and is skipped once its final weights exist.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from gendd.config import RunConfig
from gendd.data import ImageDataset
from gendd.diffusion import draw_diffusion_noise, diffusion_loss, training_scheduler
from gendd.latent_model import ImageGeometry, LatentModel, to_unit_range
from gendd.latent_model import latent_shape as latent_shape_of
from gendd.models.autoencoder import build_autoencoder, downsample_factor
from gendd.models.denoiser import build_denoiser
from gendd.tracking import start_trackers, tracker_options
from gendd.training_loop import LoopSpec, MetricsLog, resolve_mixed_precision, train_loop
from gendd.utils.atomic import atomic_path


def make_accelerator(cfg: RunConfig, run: Path, cpu: bool = False) -> Accelerator:
    """The run's accelerator, with the tracker cfg.train.tracker asks for started under `run`."""
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision),
                              gradient_accumulation_steps=cfg.train.grad_accumulation, cpu=cpu,
                              **tracker_options(cfg.train.tracker, run))
    start_trackers(accelerator)
    return accelerator


def image_geometry(cfg: RunConfig, dataset: ImageDataset) -> ImageGeometry:
    # Pad so that the autoencoder's and the denoiser's down-samplings divide the size evenly.
    pad_to = (downsample_factor(cfg.autoencoder.block_out_channels)
              * downsample_factor(cfg.denoiser.block_out_channels))
    h, w = dataset.image_size
    return ImageGeometry(dataset.channels, h, w, pad_to)


def loop_spec(cfg: RunConfig, name: str, stage, **extra) -> LoopSpec:
    """The training loop of stage `name` (`stage`: its configuration section)."""
    t = cfg.train
    return LoopSpec(name, stage.steps, stage.batch_size, stage.lr, stage.warmup_steps,
                    checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints,
                    log_every=t.log_every, **extra)


def autoencoder_for(cfg: RunConfig, channels: int):
    """The run's autoencoder, freshly initialised (torch's global seed)."""
    a = cfg.autoencoder
    return build_autoencoder(channels, a.block_out_channels, a.latent_channels,
                             a.layers_per_block, a.norm_num_groups)


def denoiser_for(cfg: RunConfig, latent_shape: tuple[int, ...], num_classes: int):
    """The run's denoiser for latents of `latent_shape` (C, H, W), freshly initialised."""
    d = cfg.denoiser
    return build_denoiser(latent_shape[0], latent_shape[1], num_classes, d.block_out_channels,
                          d.layers_per_block, d.attention_head_dim,
                          norm_num_groups=d.norm_num_groups)


class AutoencoderObjective(nn.Module):
    """Encode, sample the posterior with given noise, decode: L1 + kl_weight * KL per element.
    One module so that DDP sees a single forward."""

    def __init__(self, autoencoder, geometry: ImageGeometry, kl_weight: float):
        super().__init__()
        self.autoencoder, self.geometry, self.kl_weight = autoencoder, geometry, kl_weight

    def forward(self, images: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        x = self.geometry.pad(to_unit_range(images))
        post = self.autoencoder.encode(x).latent_dist
        recon = self.autoencoder.decode(post.mean + post.std * eps.to(x)).sample
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        return F.l1_loss(recon.float(), x) + self.kl_weight * kl.float()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item()


@torch.inference_mode()
def encode_dataset(model: LatentModel, images: torch.Tensor, batch: int = 1000,
                   progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in tqdm(range(0, len(images), batch), desc="encode", disable=not progress, leave=False):
        m, s = model.encode_distribution(images[i:i + batch])
        means.append(m.float().cpu())
        stds.append(s.float().cpu())
    return torch.cat(means), torch.cat(stds)


def train_autoencoder(run_dir: Path, cfg: RunConfig, dataset: ImageDataset,
                      accelerator: Accelerator, progress: bool = True) -> LatentModel:
    """Train (or resume) the autoencoder; set its latent statistics; save it under run_dir."""
    c = cfg.autoencoder
    geometry = image_geometry(cfg, dataset)
    torch.manual_seed(cfg.seed)
    ae = autoencoder_for(cfg, dataset.channels)
    objective = AutoencoderObjective(ae, geometry, c.kl_weight)
    latent_shape = latent_shape_of(geometry, c.latent_channels, c.block_out_channels)
    images = dataset.train_images.to(accelerator.device)

    def draw(gen, n):
        return {"eps": torch.randn((n, *latent_shape), generator=gen)}

    def loss_fn(model, idx, rnd):
        return model(images[idx.to(images.device)], rnd["eps"])

    spec = loop_spec(cfg, "autoencoder", c)
    train_loop(accelerator, objective, spec, cfg.seed, len(images), draw, loss_fn,
               run_dir / "checkpoints" / "autoencoder",
               MetricsLog(run_dir / "metrics.jsonl", accelerator.is_main_process, accelerator),
               progress=progress)
    model = LatentModel(ae.to(accelerator.device), None, geometry, dataset.class_names,
                        cfg.denoiser.prediction_type, cfg.denoiser.beta_schedule)
    with torch.inference_mode():
        # Normalise latents to zero mean, unit variance per channel (the denoiser's scale).
        sample = dataset.train_images[torch.randperm(len(dataset.train_images),
                                                     generator=torch.Generator().manual_seed(0))[:5000]]
        mean, std = encode_dataset(model, sample, progress=False)
        z = mean + std * torch.randn_like(std)
        ae.register_to_config(latents_mean=z.mean(dim=(0, 2, 3)).tolist(),
                              latents_std=z.std(dim=(0, 2, 3)).tolist())
        test = dataset.test_images[:2000]
        recon = model.decode(model.encode_distribution(test)[0].to(model.device))
        test_psnr = psnr(recon, test)
    if accelerator.is_main_process:
        model.save_autoencoder(run_dir)
        MetricsLog(run_dir / "metrics.jsonl", accelerator=accelerator).write(
            {"stage": "autoencoder", "step": c.steps, "test_psnr_db": test_psnr})
    accelerator.wait_for_everyone()
    return model


def cached_latents(run_dir: Path, model: LatentModel, dataset: ImageDataset, progress: bool):
    """Posterior mean and std of every training image, computed once and kept in the run."""
    path = run_dir / "cache" / "latents.safetensors"
    if path.is_file():
        t = load_file(str(path))
        if len(t["mean"]) == len(dataset.train_images):
            return t["mean"], t["std"]
    mean, std = encode_dataset(model, dataset.train_images, progress=progress)
    with atomic_path(path) as tmp:
        save_file({"mean": mean.contiguous(), "std": std.contiguous()}, str(tmp))
    return mean, std


def train_denoiser(run_dir: Path, cfg: RunConfig, dataset: ImageDataset, model: LatentModel,
                   accelerator: Accelerator, fd_tracker=None, progress: bool = True) -> LatentModel:
    """Train (or resume) the class-conditional denoiser on the autoencoder's latents."""
    c = cfg.denoiser
    lat_mean, lat_std = cached_latents(run_dir, model, dataset, progress)
    lat_mean, lat_std = lat_mean.to(accelerator.device), lat_std.to(accelerator.device)
    labels = dataset.train_labels.to(accelerator.device)
    latent_shape = tuple(lat_mean.shape[1:])
    torch.manual_seed(cfg.seed + 1)
    denoiser = denoiser_for(cfg, latent_shape, dataset.num_classes)
    scheduler = training_scheduler(c.prediction_type, c.beta_schedule)
    null_class = dataset.num_classes

    def draw(gen, n):
        return {"post": torch.randn((n, *latent_shape), generator=gen),
                **draw_diffusion_noise(gen, n, latent_shape)}

    def loss_fn(net, idx, rnd):
        idx = idx.to(lat_mean.device)
        rnd = {k: v.to(lat_mean.device) for k, v in rnd.items()}
        z0 = lat_mean[idx] + lat_std[idx] * rnd["post"]
        return diffusion_loss(net, z0, labels[idx], scheduler, rnd["noise"], rnd["t"],
                              rnd["u_drop"], null_class, c.label_dropout)

    def on_log(step, ema_net):
        return fd_tracker(step, LatentModel(model.autoencoder, ema_net.eval(), model.geometry,
                                            model.class_names, c.prediction_type, c.beta_schedule))

    spec = loop_spec(cfg, "denoiser", c, grad_clip=c.grad_clip, ema_decay=c.ema_decay,
                     on_log_every=cfg.train.fd_every)
    _, ema = train_loop(
        accelerator, denoiser, spec, cfg.seed, len(lat_mean), draw, loss_fn,
        run_dir / "checkpoints" / "denoiser",
        MetricsLog(run_dir / "metrics.jsonl", accelerator.is_main_process, accelerator),
        on_log=on_log if (fd_tracker and accelerator.is_main_process) else None,
        progress=progress)
    trained = LatentModel(model.autoencoder, ema.eval(), model.geometry, model.class_names,
                          c.prediction_type, c.beta_schedule)
    if accelerator.is_main_process:
        trained.save_denoiser(run_dir)
    accelerator.wait_for_everyone()
    return trained

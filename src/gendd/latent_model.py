"""The trained generator as one object: autoencoder + denoiser (EMA) + schedule + image geometry.

Images (uint8, N x C x H x W) <-> normalised latents (zero mean, unit variance per channel).
Images are scaled to [-1, 1] and padded with black to a size the networks divide evenly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DModel

from gendd.diffusion import training_scheduler
from gendd.errors import GenddError
from gendd.models.autoencoder import downsample_factor


# The run's denoisers: trained on the data, and fine-tuned from it on the stored statistics.
DENOISER_FOLDERS = {"base": "denoiser", "finetuned": "denoiser-finetuned"}


def latent_shape(geometry, latent_channels: int, block_out_channels) -> tuple[int, int, int]:
    """The autoencoder's latent shape for images of `geometry` (padded to fit its halvings)."""
    f = downsample_factor(block_out_channels)
    ph, pw = geometry.padded
    return (latent_channels, ph // f, pw // f)


@dataclass(frozen=True)
class ImageGeometry:
    channels: int
    height: int
    width: int
    pad_to: int  # padded height/width are multiples of this

    @property
    def padded(self) -> tuple[int, int]:
        return (-(-self.height // self.pad_to) * self.pad_to, -(-self.width // self.pad_to) * self.pad_to)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padded
        top, left = (ph - self.height) // 2, (pw - self.width) // 2
        return F.pad(x, (left, pw - self.width - left, top, ph - self.height - top), value=-1.0)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padded
        top, left = (ph - self.height) // 2, (pw - self.width) // 2
        return x[..., top:top + self.height, left:left + self.width]


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


class LatentModel:
    """What `generate` needs of a trained run, loadable from its directory."""

    def __init__(self, autoencoder: AutoencoderKL, denoiser: UNet2DModel | None,
                 geometry: ImageGeometry, class_names: tuple[str, ...],
                 prediction_type: str = "v_prediction", beta_schedule: str = "squaredcos_cap_v2"):
        self.autoencoder = autoencoder.eval()
        self.denoiser = denoiser.eval() if denoiser is not None else None
        self.geometry = geometry
        self.class_names = tuple(class_names)
        self.scheduler = training_scheduler(prediction_type, beta_schedule)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    def to(self, device) -> "LatentModel":
        self.autoencoder.to(device)
        if self.denoiser is not None:
            self.denoiser.to(device)
        return self

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.autoencoder.config
        return latent_shape(self.geometry, cfg.latent_channels, cfg.block_out_channels)

    def _latent_stats(self, device):
        cfg = self.autoencoder.config
        c = cfg.latent_channels
        mean = torch.tensor(cfg.latents_mean or [0.0] * c, device=device).view(1, c, 1, 1)
        std = torch.tensor(cfg.latents_std or [1.0] * c, device=device).view(1, c, 1, 1)
        return mean, std

    def encode_distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> (mean, std) of the posterior over normalised latents."""
        x = self.geometry.pad(to_unit_range(images.to(self.device)))
        post = self.autoencoder.encode(x).latent_dist
        m, s = self._latent_stats(x.device)
        return (post.mean - m) / s, post.std / s

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> uint8 images of the data set's size."""
        return to_uint8(self.decode_unit_range(latents)).cpu()

    def decode_unit_range(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> float images of the data set's size, about [-1, 1], unclamped
        (differentiable)."""
        m, s = self._latent_stats(latents.device)
        return self.geometry.crop(self.autoencoder.decode(latents * s + m).sample)

    def save(self, run_dir: Path) -> None:
        self.save_autoencoder(run_dir)
        if self.denoiser is not None:
            self.save_denoiser(run_dir)

    def save_autoencoder(self, run_dir: Path) -> None:
        """The autoencoder's folder, then generator.json (a run with both has a whole model)."""
        from gendd.utils.atomic import atomic_folder, write_json

        with atomic_folder(run_dir / "autoencoder") as tmp:
            self.autoencoder.save_pretrained(tmp)
        write_json(run_dir / "generator.json", {
            "geometry": asdict(self.geometry), "class_names": list(self.class_names),
            "prediction_type": self.scheduler.config.prediction_type,
            "beta_schedule": self.scheduler.config.beta_schedule})

    def save_denoiser(self, run_dir: Path, which: str = "base") -> None:
        from gendd.utils.atomic import atomic_folder

        with atomic_folder(run_dir / DENOISER_FOLDERS[which]) as tmp:
            self.denoiser.save_pretrained(tmp)

    @classmethod
    def load(cls, run_dir: str | Path, need_denoiser: bool = True,
             denoiser: str = "base") -> "LatentModel":
        """The run's model, with its `denoiser` ("base" or "finetuned"; `DENOISER_FOLDERS`)."""
        run_dir = Path(run_dir)
        info_path = run_dir / "generator.json"
        if not info_path.is_file() or not (run_dir / "autoencoder").is_dir():
            raise GenddError(f"{run_dir}: no trained model here (run `gendd train` first)")
        folder = run_dir / DENOISER_FOLDERS[denoiser]
        if need_denoiser and not folder.is_dir():
            if denoiser == "base":
                raise GenddError(f"{run_dir}: the denoiser is not trained yet (run `gendd train`)")
            raise GenddError(f"{run_dir}: no fine-tuned denoiser ({folder.name}); run this run's "
                             f"`gendd train --dataset D --out {run_dir}` again to add it "
                             "(train.statistics_draws and train.finetune_iterations > 0)")
        geometry, names, schedule = _read_info(info_path)
        try:
            ae = AutoencoderKL.from_pretrained(run_dir / "autoencoder")
            den = UNet2DModel.from_pretrained(folder) if need_denoiser else None
        except (OSError, ValueError) as e:
            raise GenddError(f"{run_dir}: cannot load trained weights ({e})") from None
        return cls(ae, den, geometry, names, *schedule)


def _read_info(path: Path) -> tuple[ImageGeometry, tuple[str, ...], tuple[str, str]]:
    """generator.json: the geometry, class names and schedule, or a one-line error."""
    damaged = "the run is damaged (train it again with --force)"
    try:
        info = json.loads(path.read_text())
        geometry = ImageGeometry(**info["geometry"])
        names = tuple(info["class_names"])
        schedule = (info["prediction_type"], info["beta_schedule"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise GenddError(f"{path}: unreadable ({type(e).__name__}: {e}); {damaged}") from None
    if not (all(isinstance(v, int) and v > 0 for v in asdict(geometry).values())
            and all(isinstance(v, str) for v in (*names, *schedule))):
        raise GenddError(f"{path}: a value has the wrong type; {damaged}")
    return geometry, names, schedule

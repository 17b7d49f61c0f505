"""The in-memory form every loader produces: uint8 images N x C x H x W and int64 labels."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from gendd.errors import GenddError


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image data set with its train and test splits, fully in memory."""

    name: str
    class_names: tuple[str, ...]
    train_images: torch.Tensor  # uint8, N x C x H x W
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]  # per channel, for images scaled to [0, 1]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 normalised with this data set's mean and std."""
        return normalize(images, self.mean, self.std)

    def subset(self, train_per_class: int | None = None, test_count: int | None = None,
               seed: int = 0) -> "ImageDataset":
        """A smaller copy (stratified on train) for quick runs and tests."""
        g = torch.Generator().manual_seed(seed)
        train_x, train_y = self.train_images, self.train_labels
        if train_per_class is not None:
            keep = torch.cat([
                idx[torch.randperm(len(idx), generator=g)[:train_per_class]]
                for idx in (torch.nonzero(train_y == c).flatten() for c in range(self.num_classes))
            ])
            train_x, train_y = train_x[keep], train_y[keep]
        test_x, test_y = self.test_images, self.test_labels
        if test_count is not None:
            keep = torch.randperm(len(test_y), generator=g)[:test_count]
            test_x, test_y = test_x[keep], test_y[keep]
        return ImageDataset(self.name, self.class_names, train_x, train_y, test_x, test_y,
                            self.mean, self.std)


# The evaluator's ConvNet halves an image three times (2x2 average pooling): at least 8x8.
MIN_IMAGE_SIZE = 8


def check_image_size(where: str, height: int, width: int) -> None:
    """A one-line error for images too small to train and evaluate on."""
    if min(height, width) < MIN_IMAGE_SIZE:
        raise GenddError(f"{where}: images are {height}x{width}, gendd needs at least "
                         f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (the evaluator's ConvNet halves "
                         "them three times)")


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 N x C x H x W -> float32, (x / 255 - mean) / std per channel."""
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s


def normalised_range(mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """`normalize` of the pixel levels 0 and 255, per channel (1 x C x 1 x 1 each)."""
    levels = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, len(mean), 1, 1)
    lo, hi = normalize(levels, mean, std).split(1)
    return lo, hi


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Inverse of `normalize`, rounded and clamped back to uint8."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((images.float() * s + m) * 255.0).round().clamp(0, 255).to(torch.uint8)


def warn(message: str) -> None:
    """A one-line warning on stderr, in the CLI's own style (not Python's warnings format)."""
    print(f"gendd: warning: {message}", file=sys.stderr)

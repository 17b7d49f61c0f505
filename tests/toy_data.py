"""A toy in-memory data set for tests that need no real images."""

import torch

from gendd.data.base import ImageDataset


def toy_dataset(per_class=12, classes=3, size=28, channels=1, seed=0) -> ImageDataset:
    """Random uint8 images, labels shuffled as in real data, normalised with mean 0.5 and
    std 0.25 (so pixel 0 is -2 and pixel 255 is 2 in normalised space)."""
    g = torch.Generator().manual_seed(seed)
    n = per_class * classes
    y = torch.randperm(n, generator=g) % classes
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset("toy", tuple(f"c{i}" for i in range(classes)), x, y, x[:6], y[:6],
                        (0.5,) * channels, (0.25,) * channels)

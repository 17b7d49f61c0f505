"""The ConvNet of the dataset-distillation literature and of the ECCV 2024 challenge.

`depth` blocks of Conv3x3 (padding 1, `width` channels) -> norm -> ReLU -> AvgPool 2x2, then one
Linear layer on the flattened features. The challenge's "instancenorm" is GroupNorm(C, C,
affine=True).
"""

from __future__ import annotations

import torch
from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'")


class ConvNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 width: int = 128, depth: int = 3, norm: str = "instancenorm"):
        super().__init__()
        layers: list[nn.Module] = []
        c, (h, w) = channels, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), make_norm(norm, width),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.embed_dim = c * h * w
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

"""The ConvNet of the dataset-distillation literature and of the ECCV 2024 challenge.

`depth` blocks of Conv3x3 (128 channels) -> norm -> ReLU -> AvgPool 2x2, then one Linear layer on
the flattened features. The challenge's "instancenorm" is GroupNorm(C, C, affine=True).

Padding is 1, except that the first convolution of a one-channel network pads by 3 (as in the
DC/DSA/DM and challenge code: `padding=3 if channel == 1 and d == 0`), so a 28x28 grey image is
processed at 32x32 and depth 3 ends in 128x4x4 features, exactly as there.
"""

from __future__ import annotations

import torch
from torch import nn

from gendd.models.classifier import FeatureClassifier

NORMS = ("instancenorm", "batchnorm", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'")


def first_conv_padding(channels: int) -> int:
    """The literature's padding of the first convolution (3 for grey images, else 1)."""
    return 3 if channels == 1 else 1


class AvgPool2x2(nn.AvgPool2d):
    """nn.AvgPool2d(2, 2). Under torch.compile it is written as a reshape and a mean, the same
    function (an odd last row or column is dropped, as avg_pool2d's floor mode does), which
    the compiler fuses with the norm and ReLU before it, instead of a separate pooling kernel
    that reads and writes the largest activation again (forward and backward)."""

    def __init__(self):
        super().__init__(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            return super().forward(x)
        n, c, h, w = x.shape
        x = x[:, :, : h // 2 * 2, : w // 2 * 2]
        return x.reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5))


class ConvNet(FeatureClassifier):
    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int],
                 width: int = 128, depth: int = 3, norm: str = "instancenorm"):
        layers: list[nn.Module] = []
        c, (h, w) = channels, image_size
        for d in range(depth):
            pad = first_conv_padding(channels) if d == 0 else 1
            layers += [nn.Conv2d(c, width, 3, padding=pad), make_norm(norm, width),
                       nn.ReLU(inplace=True), AvgPool2x2()]
            c, h, w = width, (h + 2 * pad - 2) // 2, (w + 2 * pad - 2) // 2
        super().__init__(nn.Sequential(*layers, nn.Flatten()), c * h * w, num_classes)

    def embed_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`embed(x)` and the output of every block (after its pooling), the feature maps
        whose spatial attention DM's attention term compares."""
        maps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, AvgPool2x2):
                maps.append(x)
        return x, maps

"""Evaluation networks by name: `build_model(name, channels, num_classes, image_size)`."""

from __future__ import annotations

from typing import Callable

from torch import nn

from gendd.errors import GenddError
from gendd.models.convnet import ConvNet
from gendd.models.resnet import ResNet18BN
from gendd.models.vgg import VGG11BN

MODELS: dict[str, Callable[[int, int, tuple[int, int]], nn.Module]] = {
    "convnet": lambda c, k, s: ConvNet(c, k, s, width=128, depth=3, norm="instancenorm"),
    "resnet18": lambda c, k, s: ResNet18BN(c, k, s),
    "vgg11": lambda c, k, s: VGG11BN(c, k, s),
}


def check_model(name: str) -> None:
    if name not in MODELS:
        raise GenddError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")


def build_model(name: str, channels: int, num_classes: int,
                image_size: tuple[int, int]) -> nn.Module:
    check_model(name)
    return MODELS[name](channels, num_classes, tuple(image_size))

"""ResNet-18 with batch norm, the cross-architecture network of the DC/DSA/DM papers
("ResNet18BN": the standard CIFAR ResNet-18, 3x3 stem without max pooling, strided 3x3
convolutions, global average pooling, one linear head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gendd.models.classifier import FeatureClassifier


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18BN(FeatureClassifier):
    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int] = (32, 32)):
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        super().__init__(nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
            nn.ReLU(inplace=True), *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 512, num_classes)

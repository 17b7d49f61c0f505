"""VGG-11 with batch norm, the cross-architecture network of the DC/DSA/DM papers ("VGG11BN":
Conv3x3-BN-ReLU blocks with max pooling, one linear head on the 512 final features). As there,
the first convolution of a one-channel network pads by 3 (28x28 -> 32x32)."""

from __future__ import annotations

from torch import nn

from gendd.models.classifier import FeatureClassifier
from gendd.models.convnet import first_conv_padding

VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11BN(FeatureClassifier):
    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int] = (32, 32)):
        layers: list[nn.Module] = []
        cin = channels
        for i, v in enumerate(VGG11_CFG):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                pad = first_conv_padding(channels) if i == 0 else 1
                layers += [nn.Conv2d(cin, v, 3, padding=pad), nn.BatchNorm2d(v),
                           nn.ReLU(inplace=True)]
                cin = v
        # 32x32 inputs end at 1x1; larger ones are averaged down to it.
        super().__init__(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 512,
                         num_classes)

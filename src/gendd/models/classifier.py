"""The shape every evaluation network shares: a feature extractor that ends in flat vectors
(`features`, `embed_dim` wide) and one linear head (`classifier`). `embed` gives the features
that DM, herding and the Frechet distance use."""

from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    def __init__(self, features: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.features, self.embed_dim = features, embed_dim
        self.classifier = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

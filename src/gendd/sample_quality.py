"""Feature spaces for scoring samples: a classifier trained on the real training set, and
Inception-v3 when the user gives its weights.

The classifier scores samples during training (a Frechet distance in its feature space,
reported as `fd_classifier` so it is never mistaken for Inception FID, and how often it agrees
with the class a sample was drawn for). With the Inception weights, the same samples also give
`fid_inception`, the FID of pytorch-fid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gendd.data import ImageDataset
from gendd.evaluate import (challenge_protocol, network_outputs, predict, test_accuracy,
                            train_network)
from gendd.models.convnet import ConvNet
from gendd.runtime import batched
from gendd.utils.atomic import atomic_path, write_json

CLASSIFIER_WIDTH = 64


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples):
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2).

    tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a S_b. When a set
    has fewer samples than dimensions (8192-d features at 64x64), those eigenvalues are the ones
    of a small symmetric matrix, (B A^T)(A B^T) / ((n-1)(m-1)) with A, B the centred sets, so the
    d x d covariances and their matrix square root are never formed. Exact either way."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(b) < len(a):
        a, b = b, a
    n, m, d = len(a), len(b), a.shape[1]
    ac, bc = a - a.mean(0), b - b.mean(0)
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    traces = float((ac ** 2).sum() / (n - 1) + (bc ** 2).sum() / (m - 1))
    if n < d:
        cross = ac @ bc.T  # n x m
        eigenvalues = np.linalg.eigvalsh(cross @ cross.T / ((n - 1) * (m - 1)))
    else:
        w, v = np.linalg.eigh(ac.T @ ac / (n - 1))
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # S_a^1/2, symmetric
        eigenvalues = np.linalg.eigvalsh(root @ (bc.T @ bc / (m - 1)) @ root)
    # The eigenvalues are >= 0 in exact arithmetic; rounding leaves tiny negative ones.
    return mean_term + traces - 2 * float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


class RealDataClassifier:
    def __init__(self, net: ConvNet, dataset: ImageDataset):
        self.net, self.dataset = net.eval(), dataset

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's embedding of uint8 images, in fp32."""
        return network_outputs(self.net, self.dataset.normalize(images), self.net.embed,
                               batch_size=2000, fast=False)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return predict(self.net, self.dataset.normalize(images))


def load_or_train_classifier(folder: Path, dataset: ImageDataset, seed: int = 0,
                             epochs: int = 1, progress: bool = True) -> RealDataClassifier:
    """The run's real-data classifier, trained once (a few epochs with DSA) and kept."""
    weights = folder / "model.safetensors"
    torch.manual_seed(seed)
    net = ConvNet(dataset.channels, dataset.num_classes, dataset.image_size, width=CLASSIFIER_WIDTH)
    if weights.is_file():  # written after info.json: the classifier is whole
        net.load_state_dict(load_file(str(weights)))
        return RealDataClassifier(net, dataset)
    net = train_network(net, dataset.normalize(dataset.train_images), dataset.train_labels,
                        challenge_protocol(epochs=epochs), generator=seed, progress=progress)
    acc = test_accuracy(net, dataset.normalize(dataset.test_images), dataset.test_labels)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    write_json(folder / "info.json", {"architecture": f"ConvNet width {CLASSIFIER_WIDTH}",
                                      "epochs": epochs, "test_accuracy": acc})
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    return RealDataClassifier(net, dataset)


class InceptionFeatures:
    """pytorch-fid's 2048-d Inception pool features of uint8 images."""

    def __init__(self, weights: str | Path, device: torch.device | str = "cpu"):
        from gendd.models.inception import load_fid_inception

        self.net, self.device = load_fid_inception(weights).to(device), torch.device(device)

    def embed(self, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
        return batched(lambda x: self.net(x.to(self.device).float() / 255), images, batch)


class FDTracker:
    """Frechet distance of a fixed, class-balanced sample set to the real test set, in the
    real-data classifier's feature space (`fd_classifier`) and, when given, Inception's
    (`fid_inception`). Both are biased upwards, the more so the fewer the samples: compare
    values at equal fd_samples only."""

    def __init__(self, classifier: RealDataClassifier, samples: int, sampler, seed: int = 12345,
                 inception: InceptionFeatures | None = None):
        self.classifier, self.sampler, self.seed = classifier, sampler, seed
        self.per_class = max(2, samples // classifier.dataset.num_classes)
        self.spaces = {"fd_classifier": classifier}
        if inception is not None:
            self.spaces["fid_inception"] = inception
        test = classifier.dataset.test_images
        self.real = {name: space.embed(test).numpy() for name, space in self.spaces.items()}

    def __call__(self, step: int, model) -> dict:
        from gendd.generate import round_noise, sample_images

        labels, noise, step_seeds = round_noise(model, self.seed, range(model.num_classes),
                                                self.per_class, 0)
        images = sample_images(model, labels, noise, self.sampler, step_seeds)
        out = {name: frechet_distance(space.embed(images).numpy(), self.real[name])
               for name, space in self.spaces.items()}
        agree = float((self.classifier.predict(images) == labels).float().mean()) * 100
        return {**out, "sample_class_agreement": agree}

"""Feature spaces for scoring samples: a classifier trained on the real training set, and
Inception-v3 when the user gives its weights.

The classifier scores samples during training (a Frechet distance in its feature space,
reported as `fd_classifier` so it is never mistaken for Inception FID) and ranks candidates
when sets are selected from over-generated samples. With the Inception weights, the same
samples also give `fid_inception`, the FID of pytorch-fid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy import linalg

from gendd.data import ImageDataset
from gendd.evaluate import challenge_protocol, predict, test_accuracy, train_network
from gendd.models.convnet import ConvNet
from gendd.utils.atomic import atomic_path, write_json

CLASSIFIER_WIDTH = 64


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as is customary
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class RealDataClassifier:
    def __init__(self, net: ConvNet, dataset: ImageDataset):
        self.net, self.dataset = net.eval(), dataset

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch: int = 2000) -> torch.Tensor:
        device = next(self.net.parameters()).device
        return torch.cat([self.net.embed(self.dataset.normalize(images[i:i + batch]).to(device)).float().cpu()
                          for i in range(0, len(images), batch)])

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor, batch: int = 2000) -> torch.Tensor:
        device = next(self.net.parameters()).device
        return torch.cat([self.net(self.dataset.normalize(images[i:i + batch]).to(device)).float().softmax(1).cpu()
                          for i in range(0, len(images), batch)])

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return predict(self.net, self.dataset.normalize(images))


def load_or_train_classifier(folder: Path, dataset: ImageDataset, seed: int = 0,
                             epochs: int = 2, progress: bool = True) -> RealDataClassifier:
    """The run's real-data classifier, trained once (a few epochs with DSA) and kept."""
    weights = folder / "model.safetensors"
    torch.manual_seed(seed)
    net = ConvNet(dataset.channels, dataset.num_classes, dataset.image_size, width=CLASSIFIER_WIDTH)
    if weights.is_file():
        net.load_state_dict(load_file(str(weights)))
        return RealDataClassifier(net, dataset)
    net = train_network(net, dataset.normalize(dataset.train_images), dataset.train_labels,
                        challenge_protocol(epochs=epochs), generator=seed, progress=progress)
    acc = test_accuracy(net, dataset.normalize(dataset.test_images), dataset.test_labels)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    write_json(folder / "info.json", {"architecture": f"ConvNet width {CLASSIFIER_WIDTH}",
                                      "epochs": epochs, "test_accuracy": acc})
    return RealDataClassifier(net, dataset)


class InceptionFeatures:
    """pytorch-fid's 2048-d Inception pool features of uint8 images."""

    def __init__(self, weights: str | Path, device: torch.device | str = "cpu"):
        from gendd.models.inception import load_fid_inception

        self.net, self.device = load_fid_inception(weights).to(device), torch.device(device)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
        return torch.cat([self.net(images[i:i + batch].to(self.device).float() / 255).cpu()
                          for i in range(0, len(images), batch)])


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

        labels, noise = round_noise(model, self.seed, range(model.num_classes), self.per_class, 0)
        images = sample_images(model, labels, noise, self.sampler)
        out = {name: frechet_distance(space.embed(images).numpy(), self.real[name])
               for name, space in self.spaces.items()}
        agree = float((self.classifier.predict(images) == labels).float().mean()) * 100
        return {**out, "sample_class_agreement": agree}

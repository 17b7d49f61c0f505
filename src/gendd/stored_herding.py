"""A start for sampling that reads no data: `sampler.candidates` times as many samples as the set
needs, of which herding keeps, per class, those whose mean embedding stays closest to the real
class means stored in the run (`gendd.real_statistics`), in the random networks and under the
augmentations of its first draws."""

from __future__ import annotations

import torch

from gendd.augment import DSA_STRATEGY, dsa
from gendd.baselines import herding_order
from gendd.evaluate import challenge_protocol, reinit_network_
from gendd.real_statistics import RealStatistics
from gendd.refine import embedding_network
from gendd.runtime import default_device

HERDING_DRAWS = 32  # stored draws whose networks embed the candidates


def herded(stats: RealStatistics, images: torch.Tensor, labels: torch.Tensor, ipc: int,
           draws: int = HERDING_DRAWS) -> torch.Tensor:
    """Indices of `ipc` images of each class in `labels` (uint8 `images`), in herding order."""
    dataset, protocol, device = stats.geometry(), challenge_protocol(), default_device()
    draws = min(draws, len(stats))
    net, embed = embedding_network(dataset, "all", device)
    x = dataset.normalize(images).to(device)
    features = []
    with torch.no_grad():
        for d in range(draws):
            reinit_network_(net, protocol, dataset, int(stats.net_seeds[d]))
            augmented = dsa(x, torch.Generator().manual_seed(int(stats.aug_seeds[d])),
                            DSA_STRATEGY, protocol.dsa_params, siamese=True)
            features.append(embed(augmented).float().cpu())
    features = torch.cat(features, 1)
    targets = stats.means[:draws].float().permute(1, 0, 2).flatten(1)  # classes x (draws * d)
    keep = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[herding_order(features[idx], ipc, targets[c])])
    return torch.cat(keep)

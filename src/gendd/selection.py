"""Choosing IPC images per class from over-generated candidates.

Candidates the real-data classifier does not recognise as their class are dropped first (the
most confident fill in if too few remain); the rest are spread over the class by greedy
k-center selection in the classifier's feature space, starting from the most confident one.
"""

from __future__ import annotations

import torch


def kcenter_greedy(features: torch.Tensor, k: int, first: int = 0) -> list[int]:
    """Indices of k rows chosen greedily so that each new one is the farthest from those
    already chosen (a 2-approximation of the k-center problem)."""
    chosen = [first]
    dist = torch.cdist(features, features[first:first + 1]).squeeze(1)
    while len(chosen) < min(k, len(features)):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.cdist(features, features[nxt:nxt + 1]).squeeze(1))
    return chosen


def select_confident_diverse(probabilities: torch.Tensor, features: torch.Tensor, label: int,
                             k: int) -> list[int]:
    """Pick k of one class's candidates: correctly classified first, then spread by k-center."""
    conf = probabilities[:, label]
    correct = torch.nonzero(probabilities.argmax(1) == label).flatten()
    if len(correct) < k:  # too few recognised: take the most confident
        correct = torch.argsort(conf, descending=True)[:k]
    pool_conf = conf[correct]
    first = int(pool_conf.argmax())
    picked = kcenter_greedy(features[correct], k, first)
    return correct[picked].tolist()

"""Published ConvNet test accuracies (%, hard labels) to show beside a run's own, per data set,
method and images per class. Sources: docs/PROTOCOL.md, and the DC/DSA papers' Table 1 for
MNIST and CIFAR-10."""

from __future__ import annotations

# data set -> method -> {IPC: accuracy}; a missing IPC was not published.
PUBLISHED: dict[str, dict[str, dict[int, float]]] = {
    "fashion-mnist": {
        "random real": {1: 51.4, 10: 73.8, 50: 82.5},
        "DC": {1: 70.5, 10: 82.3, 50: 83.6},
        "DSA": {1: 70.6, 10: 84.6, 50: 88.7},
    },
    "mnist": {
        "DC": {1: 91.7, 10: 97.4, 50: 98.8},
        "DSA": {1: 88.7, 10: 97.8, 50: 99.2},
    },
    "cifar-10": {
        "DC": {1: 28.3, 10: 44.9, 50: 53.9},
        "DSA": {1: 28.8, 10: 52.1, 50: 60.6},
    },
    "cifar-100": {
        "random real": {1: 4.2, 10: 14.6, 50: 33.4},
        "DC": {1: 12.8, 10: 25.2},
        "DSA": {1: 13.9, 10: 32.3, 50: 42.8},
    },
    "tiny-imagenet": {
        "random real": {1: 1.4, 10: 5.0, 50: 15.0},
    },
}

SOURCES = ("Fashion-MNIST, MNIST, CIFAR-10: DC (ICLR 2021) and DSA (ICML 2021) papers, Table 1; "
           "CIFAR-100 and Tiny-ImageNet: the table of the DATM repository README. ConvNet, hard "
           "labels, each paper's own evaluation, not this evaluator's.")

# The methods shown as columns, in this order.
METHODS = ("random real", "DC", "DSA")


def published(dataset: str, method: str, ipc: int | None) -> float | None:
    """The published accuracy of `method` on `dataset` at `ipc`, or None where none is known."""
    return PUBLISHED.get(dataset, {}).get(method, {}).get(ipc) if ipc is not None else None

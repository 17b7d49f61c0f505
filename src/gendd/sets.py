"""The distilled-set file: one safetensors file with `images` (uint8 N x C x H x W), `labels`
(int64 N) and a JSON metadata block (data set, class names, how it was made).

Images are ordered class by class. Reading never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gendd.errors import GenddError
from gendd.utils.atomic import atomic_path

METADATA_KEY = "gendd"


@dataclass
class DistilledSet:
    images: torch.Tensor  # uint8 N x C x H x W
    labels: torch.Tensor  # int64 N
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise GenddError(f"set images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        self.labels = self.labels.to(torch.int64)
        if self.labels.shape != (self.images.shape[0],):
            raise GenddError(f"set has {self.images.shape[0]} images but labels of shape "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.numel())

    def counts_per_class(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()

    def sorted_by_class(self) -> "DistilledSet":
        order = torch.argsort(self.labels, stable=True)
        return DistilledSet(self.images[order], self.labels[order], dict(self.metadata))


def save_set(path: str | Path, dset: DistilledSet) -> Path:
    """Write atomically (a failed write, as on a full disk, leaves the file there as it was);
    the metadata must be JSON-serialisable."""
    path = Path(path)
    meta = {METADATA_KEY: json.dumps(dset.metadata)}
    try:
        with atomic_path(path) as tmp:
            save_file({"images": dset.images.contiguous(), "labels": dset.labels.contiguous()},
                      str(tmp), metadata=meta)
    except (OSError, SafetensorError) as e:
        raise write_error(path, e) from None
    return path


def write_error(path: Path, e: Exception) -> GenddError:
    """The one-line error of a failed atomic write of `path` (nothing of it was replaced)."""
    kept = "; the file there is kept" if path.exists() else ""
    return GenddError(f"cannot write {path} ({getattr(e, 'strerror', None) or e}){kept}")


def load_set(path: str | Path) -> DistilledSet:
    path = Path(path)
    if not path.is_file():
        raise GenddError(f"{path}: no such set file")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            raw_meta = (f.metadata() or {}).get(METADATA_KEY, "{}")
        metadata = json.loads(raw_meta)
    except (SafetensorError, OSError, ValueError) as e:
        raise GenddError(f"{path}: not a readable gendd set file ({e})") from None
    if not isinstance(metadata, dict):
        raise GenddError(f"{path}: not a readable gendd set file (its metadata is JSON "
                         f"{type(metadata).__name__}, not an object)")
    missing = {"images", "labels"} - set(tensors)
    if missing:
        raise GenddError(f"{path}: set file lacks tensor(s) {', '.join(sorted(missing))}")
    return DistilledSet(tensors["images"], tensors["labels"], metadata)


def check_ipc(ipc: int) -> None:
    """Images per class are at least one."""
    if ipc < 1:
        raise GenddError(f"--ipc must be at least 1 (got {ipc})")

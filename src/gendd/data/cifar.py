"""CIFAR-10 and CIFAR-100 from the "python version" distribution: the extracted folder or the
official .tar.gz, read straight from the archive (checksum verified) without extracting it.

Each batch is a pickled dict with bytes keys: b'data' (N x 3072 uint8; 1024 red, 1024 green,
1024 blue values, each a row-major 32x32 plane) and the labels (b'labels' for CIFAR-10,
b'fine_labels' for CIFAR-100); the meta file names the classes. The pickles are read with the
restricted unpickler (safe_pickle): a crafted file cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gendd.data.archives import read_tar_members
from gendd.data.base import ImageDataset
from gendd.data.checksums import OFFICIAL_MD5, verify_archive
from gendd.data.safe_pickle import safe_loads
from gendd.errors import GenddError


@dataclass(frozen=True)
class CifarLayout:
    archive: str      # official archive name
    folder: str       # the folder it extracts to
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: bytes
    labels_key: bytes
    num_classes: int


CIFAR10 = CifarLayout("cifar-10-python.tar.gz", "cifar-10-batches-py",
                      tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                      "batches.meta", b"label_names", b"labels", 10)
CIFAR100 = CifarLayout("cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
                       "meta", b"fine_label_names", b"fine_labels", 100)


def _read_files(source: Path, layout: CifarLayout) -> dict[str, tuple[str, bytes]]:
    """file name -> (where, for errors; raw bytes), from the folder or the archive."""
    names = (*layout.train, *layout.test, layout.meta)
    if source.is_dir():
        out = {}
        for name in names:
            path = source / name
            if not path.is_file():
                raise GenddError(f"{path}: missing (a {layout.folder} folder holds "
                                 f"{', '.join(names)})")
            try:
                out[name] = (str(path), path.read_bytes())
            except OSError as e:
                raise GenddError(f"{path}: cannot read ({e.strerror})") from None
        return out
    verify_archive(source, OFFICIAL_MD5[layout.archive])
    members = read_tar_members(source, {f"{layout.folder}/{n}" for n in names})
    out = {}
    for name in names:
        member = f"{layout.folder}/{name}"
        if member not in members:
            raise GenddError(f"{source}: member {member} missing from the archive")
        out[name] = (f"{source}:{member}", members[member])
    return out


def _dict(where: str, raw: bytes) -> dict:
    obj = safe_loads(raw, where)
    if not isinstance(obj, dict):
        raise GenddError(f"{where}: expected a pickled dict, found {type(obj).__name__}")
    # Python 3 pickles of a batch loaded as text have str keys where the originals have bytes.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _batch(where: str, raw: bytes, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    d = _dict(where, raw)
    for key in (b"data", layout.labels_key):
        if key not in d:
            raise GenddError(f"{where}: no {key!r} entry (keys: {sorted(d)})")
    data, labels = d[b"data"], d[layout.labels_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise GenddError(f"{where}: b'data' must be a N x 3072 uint8 array, found {desc}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise GenddError(f"{where}: {layout.labels_key!r} must be a list of integers")
    if len(labels) != len(data):
        raise GenddError(f"{where}: {len(labels)} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise GenddError(f"{where}: label {bad} out of range 0..{layout.num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _class_names(where: str, raw: bytes, layout: CifarLayout) -> tuple[str, ...]:
    names = _dict(where, raw).get(layout.names_key)
    if (not isinstance(names, list) or len(names) != layout.num_classes
            or not all(isinstance(n, (bytes, str)) for n in names)):
        raise GenddError(f"{where}: {layout.names_key!r} must list {layout.num_classes} "
                         "class names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _split(files, batch_names, layout) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_batch(*files[name], layout) for name in batch_names]
    return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
            torch.from_numpy(np.concatenate([p[1] for p in parts])))


def load_cifar(name: str, source: Path, layout: CifarLayout, mean, std) -> ImageDataset:
    """Read a CIFAR data set from its extracted folder or its official .tar.gz `source`."""
    files = _read_files(Path(source), layout)
    classes = _class_names(*files[layout.meta], layout)
    train = _split(files, layout.train, layout)
    test = _split(files, layout.test, layout)
    return ImageDataset(name, classes, *train, *test, tuple(mean), tuple(std))

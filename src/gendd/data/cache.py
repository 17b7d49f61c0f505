"""Decode-once cache: a data set read from many small image files is stored, after its first
load, as uint8 tensors in one safetensors file, and read from there while its source is
unchanged.

Where: `$GENDD_CACHE`, else `$XDG_CACHE_HOME/gendd`, else `~/.cache/gendd`. One file per
source and loading options (its name hashes both), so a changed source replaces its old cache
instead of piling up. The source's fingerprint (every file's name, size and modification
time, or the archive's) is stored inside; a mismatch, a foreign or a torn file means a
rebuild. Writes are atomic; a cache that cannot be written is a warning, never a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gendd.data.base import ImageDataset, warn
from gendd.utils.atomic import atomic_path

FORMAT = "gendd-dataset-cache/1"
_TENSORS = ("train_images", "train_labels", "test_images", "test_labels")


def cache_dir() -> Path:
    if os.environ.get("GENDD_CACHE"):
        return Path(os.environ["GENDD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gendd"


def cache_path(name: str, source: str | os.PathLike, options: str = "") -> Path:
    key = f"{name}\0{Path(source).resolve()}\0{options}"
    slug = re.sub(r"[^\w.-]+", "_", name)[:40]
    return cache_dir() / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.safetensors"


def _read(path: Path, fingerprint: str) -> ImageDataset | None:
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
            return None
        t = load_file(path)
        return ImageDataset(meta["name"], tuple(json.loads(meta["class_names"])),
                            *(t[k] for k in _TENSORS),
                            tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"])))
    except (OSError, SafetensorError, KeyError, ValueError):
        return None


def _write(path: Path, ds: ImageDataset, fingerprint: str) -> None:
    meta = {"format": FORMAT, "fingerprint": fingerprint, "name": ds.name,
            "class_names": json.dumps(list(ds.class_names)),
            "mean": json.dumps(list(ds.mean)), "std": json.dumps(list(ds.std))}
    try:
        with atomic_path(path) as tmp:
            save_file({k: getattr(ds, k).contiguous() for k in _TENSORS}, str(tmp), metadata=meta)
    except OSError as e:
        warn(f"could not write the data cache {path} ({e}); the next load decodes again")


def cached(name: str, source: str | os.PathLike, options: str, fingerprint: str,
           build: Callable[[], ImageDataset]) -> ImageDataset:
    """The data set from its cache if `fingerprint` matches, else `build()` it and cache it."""
    path = cache_path(name, source, options)
    if path.is_file():
        ds = _read(path, fingerprint)
        if ds is not None:
            return ds
    ds = build()
    _write(path, ds, fingerprint)
    return ds

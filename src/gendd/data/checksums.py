"""Checksums of the official archives, checked whenever an archive is read or downloaded.

A user with a re-packed archive (same contents, other bytes) accepts it explicitly, once:
`gendd datasets --check NAME --trust-archive` records its md5 in
`<cache dir>/trusted-archives.json`; from then on that file, unchanged, is accepted too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gendd.data.cache import cache_dir
from gendd.errors import GenddError
from gendd.utils.atomic import write_json

# md5 as published by the data sets' authors (the CIFAR page; cs231n for Tiny-ImageNet) and
# used throughout the ecosystem (torchvision and others).
OFFICIAL_MD5 = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de",
}


def md5_of(path: str | os.PathLike) -> str:
    h = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    except OSError as e:
        raise GenddError(f"{path}: cannot read ({e.strerror})") from None
    return h.hexdigest()


def _trust_file() -> Path:
    return cache_dir() / "trusted-archives.json"


def _trusted() -> dict[str, str]:
    try:
        return dict(json.loads(_trust_file().read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def verify_archive(path: str | os.PathLike, expected: str) -> None:
    """Fail with one line unless `path` has the official md5 or was accepted by the user."""
    digest = md5_of(path)
    if digest == expected or _trusted().get(str(Path(path).resolve())) == digest:
        return
    raise GenddError(f"{path}: md5 {digest} differs from the official {expected} (corrupt or "
                     "incomplete file; for an archive you re-packed yourself, accept it with "
                     "`gendd datasets --check NAME --trust-archive`)")


def set_trusted(path: str | os.PathLike, trusted: bool = True) -> None:
    """Accept (or stop accepting) the archive at `path` with its current md5."""
    entries = _trusted()
    key = str(Path(path).resolve())
    if trusted:
        entries[key] = md5_of(path)
    else:
        entries.pop(key, None)
    write_json(_trust_file(), entries)

"""Writing a large distilled set as it is made, with memory independent of its size.

Images arrive in any class order; each class is spooled to its own temporary file, and `close`
assembles one safetensors file (class by class) by streaming those files into it. The layout
written is exactly safetensors': an 8-byte little-endian header length, a JSON header, then the
raw tensor bytes.

A spool folder is named after the process that writes it (`.gendd-spool-PID@HOST-*`); one left
by a process that was killed is removed by the next writer into the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import tempfile
from pathlib import Path

import torch

from gendd.sets import METADATA_KEY, write_error
from gendd.utils.atomic import atomic_path

_CHUNK = 1 << 22
_SPOOL = ".gendd-spool-"


def _owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def remove_stale_spools(folder: Path) -> None:
    """Remove the spool folders in `folder` of this host's processes that no longer run."""
    host = socket.gethostname()
    for path in folder.glob(_SPOOL + "*"):
        pid, _, rest = path.name[len(_SPOOL):].partition("@")
        if pid.isdigit() and rest.rpartition("-")[0] == host and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


class StreamingSetWriter:
    def __init__(self, path: str | Path, num_classes: int, image_shape: tuple[int, int, int]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.image_shape = tuple(image_shape)
        self.counts = [0] * num_classes
        remove_stale_spools(self.path.parent)
        self._spool = Path(tempfile.mkdtemp(prefix=f"{_SPOOL}{_owner()}-", dir=self.path.parent))
        self._files = [open(self._spool / f"{c}.u8", "wb") for c in range(num_classes)]

    def add(self, images: torch.Tensor, label: int) -> None:
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"expected uint8 images of shape (N, {self.image_shape}), "
                             f"got {images.dtype} {tuple(images.shape)}")
        self._files[label].write(images.contiguous().numpy().tobytes())
        self.counts[label] += len(images)

    def close(self, metadata: dict, per_class: int | None = None) -> int:
        """Write the set with `per_class` images of each class that received any (default: the
        smallest count, so the set is class-balanced). Returns the images per class written."""
        for f in self._files:
            f.close()
        classes = [c for c, n in enumerate(self.counts) if n > 0]
        per_class = min(self.counts[c] for c in classes) if per_class is None else per_class
        if not classes or per_class > min(self.counts[c] for c in classes):
            self.abort()
            raise ValueError(f"cannot write {per_class} images per class from counts {self.counts}")
        image_bytes = int(torch.tensor(self.image_shape).prod())
        n = per_class * len(classes)
        header = {
            "__metadata__": {METADATA_KEY: json.dumps(metadata)},
            "images": {"dtype": "U8", "shape": [n, *self.image_shape],
                       "data_offsets": [0, n * image_bytes]},
            "labels": {"dtype": "I64", "shape": [n],
                       "data_offsets": [n * image_bytes, n * image_bytes + 8 * n]},
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as out:
                out.write(struct.pack("<Q", len(head)) + head)
                for c in classes:
                    remaining = per_class * image_bytes
                    with open(self._spool / f"{c}.u8", "rb") as src:
                        while remaining:
                            block = src.read(min(_CHUNK, remaining))
                            out.write(block)
                            remaining -= len(block)
                for c in classes:
                    out.write(torch.full((per_class,), c, dtype=torch.int64).numpy().tobytes())
        except OSError as e:
            raise write_error(self.path, e) from None
        finally:
            shutil.rmtree(self._spool, ignore_errors=True)
        return per_class

    def abort(self) -> None:
        for f in self._files:
            f.close()
        shutil.rmtree(self._spool, ignore_errors=True)

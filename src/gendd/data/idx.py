"""The IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw).

Layout: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number of dimensions, then
each dimension as a big-endian uint32, then the data row-major.

The header is read first and the data size it promises checked before anything is allocated:
against the file's size when raw, against the most a gzip file of that size can inflate to
otherwise. Then exactly that many bytes are read, and the stream must end there, so a small
gzip file that inflates to gigabytes is refused after reading only what its header announced.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from gendd.errors import GenddError

_UBYTE = 0x08
_MAX_INFLATE = 1032  # deflate's best ratio: no gzip stream inflates to more than this per byte
_CHUNK = 1 << 20


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX uint8 file (``.gz`` or raw) into an array, validating header and size."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(2) == b"\x1f\x8b":
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as stream:
                    return _read(path, stream, size, gz=True)
            f.seek(0)
            return _read(path, f, size, gz=False)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise GenddError(f"{path}: cannot read IDX file ({e})") from None


def _read(path: Path, f, file_size: int, gz: bool) -> np.ndarray:
    """The array in stream `f` (inflated from a gzip file when `gz`) of a `file_size` file."""
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise GenddError(f"{path}: not an IDX file (bad magic number)")
    if head[2] != _UBYTE:
        raise GenddError(f"{path}: IDX data type 0x{head[2]:02x} is not supported (want 0x08, uint8)")
    ndim = head[3]
    dims = f.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise GenddError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", dims)
    expected, header = math.prod(shape), 4 + 4 * ndim
    if not gz and file_size - header != expected:
        raise GenddError(f"{path}: IDX data is {file_size - header} bytes, header says {expected} "
                         "(truncated or corrupt file)")
    if gz and expected > file_size * _MAX_INFLATE:
        raise GenddError(f"{path}: IDX header says {' x '.join(map(str, shape))} = {expected} "
                         f"bytes, more than a {file_size}-byte gzip file can hold")
    data = np.empty(expected, np.uint8)
    got = _read_into(f, data)
    if got < expected:
        raise GenddError(f"{path}: IDX data is {got} bytes, header says {expected} "
                         "(truncated or corrupt file)")
    if f.read(1):
        raise GenddError(f"{path}: IDX data goes on past the {expected} bytes its header says "
                         "(corrupt file)")
    return data.reshape(shape)


def _read_into(f, data: np.ndarray) -> int:
    view, got = memoryview(data), 0
    while got < len(data):
        n = f.readinto(view[got:got + _CHUNK])
        if not n:
            break
        got += n
    return got


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip when the name ends in .gz). Used by tests and exports."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)

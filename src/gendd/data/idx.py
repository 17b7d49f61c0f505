"""The IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw).

Layout: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number of dimensions, then
each dimension as a big-endian uint32, then the data row-major.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from gendd.errors import GenddError

_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX uint8 file (``.gz`` or raw) into an array, validating header and size."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise GenddError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise GenddError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _UBYTE:
        raise GenddError(f"{path}: IDX data type 0x{raw[2]:02x} is not supported (want 0x08, uint8)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise GenddError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise GenddError(f"{path}: IDX data is {len(raw) - header} bytes, header says {expected} "
                         "(truncated or corrupt file)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip when the name ends in .gz). Used by tests and exports."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)

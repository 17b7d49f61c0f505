"""Reading untrusted pickles (the CIFAR batches) without running code from them.

A pickle names callables by module and attribute and calls them while loading, so an ordinary
`pickle.load` of a crafted file can run anything. The unpickler here resolves only the three
names that numpy needs to rebuild an array; dicts, lists, tuples, numbers, str and bytes need
no name at all. Anything else (os.system, builtins.eval, subprocess, ...) is refused before it
is looked up, let alone called.

Arrays are bounded too: together they may hold no more bytes than the file itself. A real
file's arrays are filled from its own bytes; an array made from a shape alone (or a view with
zero strides) is memory the file never paid for, the way a tiny file could ask for gigabytes.

Python 3 writes bytes at protocol 2 as `_codecs.encode(text, 'latin1')`; that call (and only
with that encoding) is allowed, so such re-pickled CIFAR files read too.
"""

from __future__ import annotations

import io
import math
import pickle

import numpy as np

from gendd.errors import GenddError


_numpy_reconstruct = np.empty(0).__reduce__()[0]  # numpy's own, wherever this numpy keeps it


def _dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:  # object arrays would unpickle arbitrary Python objects as elements
        raise pickle.UnpicklingError(f"arrays of dtype {dtype} are not allowed")
    return dtype


def _latin1(text, encoding):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin-1")


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy's array reconstruction, its dtype and latin1 encoding; the arrays
    it makes may hold `max_bytes` in all."""

    def __init__(self, file, max_bytes: int, **kwargs):
        super().__init__(file, **kwargs)
        self._left = max_bytes
        self._ndarray = self._new_array  # the one object that stands for the ndarray type
        # Both spellings of the module: numpy < 2 wrote `numpy.core`, numpy >= 2 `numpy._core`.
        self._allowed = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): self._ndarray,
            ("numpy", "dtype"): _dtype,
            ("_codecs", "encode"): _latin1,
        }

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (only plain data "
                                         "and numpy arrays are allowed)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent references are not allowed")

    def _charge(self, shape, dtype) -> None:
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise pickle.UnpicklingError(f"bad array shape {shape!r}")
        size = math.prod(dims) * _dtype(dtype).itemsize
        if size > self._left:
            raise pickle.UnpicklingError(f"an array of shape {dims} ({size} bytes) is more than "
                                         "the file could hold")
        self._left -= size

    def _new_array(self, shape, dtype=float, *rest):
        self._charge(shape, dtype)
        return np.ndarray(shape, _dtype(dtype), *rest)

    def _reconstruct(self, subtype, shape, dtype_code):
        # The subtype is pinned: only plain ndarray is wanted here.
        if subtype is not self._ndarray:
            raise pickle.UnpicklingError("array reconstruction with a subtype other than ndarray")
        self._charge(shape, dtype_code)
        return _numpy_reconstruct(np.ndarray, shape, dtype_code)


def safe_loads(data: bytes, origin: str):
    """Unpickle `data` (read from `origin`, named in errors) admitting only plain containers,
    numbers, str, bytes and numpy arrays. Python 2 strings come back as bytes, as in the
    official CIFAR files (their dict keys are b'data', b'labels', ...)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), len(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise GenddError(f"{origin}: unsafe or corrupt pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as e:
        raise GenddError(f"{origin}: corrupt pickle ({type(e).__name__}: {e})") from None

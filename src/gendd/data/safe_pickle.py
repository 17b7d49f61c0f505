"""Reading untrusted pickles (the CIFAR batches) without running code from them.

A pickle names callables by module and attribute and calls them while loading, so an ordinary
`pickle.load` of a crafted file can run anything. The unpickler here resolves only the three
names that numpy needs to rebuild an array; dicts, lists, tuples, numbers, str and bytes need
no name at all. Anything else (os.system, builtins.eval, subprocess, ...) is refused before it
is looked up, let alone called.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from gendd.errors import GenddError


_numpy_reconstruct = np.empty(0).__reduce__()[0]  # numpy's own, wherever this numpy keeps it


def _reconstruct(subtype, shape, dtype_code):
    # The subtype is pinned: only plain ndarray is wanted here.
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("array reconstruction with a subtype other than ndarray")
    return _numpy_reconstruct(np.ndarray, shape, dtype_code)


def _dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:  # object arrays would unpickle arbitrary Python objects as elements
        raise pickle.UnpicklingError(f"arrays of dtype {dtype} are not allowed")
    return dtype


# Both spellings of the module: numpy < 2 wrote `numpy.core`, numpy >= 2 writes `numpy._core`.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (only plain data "
                                         "and numpy arrays are allowed)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent references are not allowed")


def safe_loads(data: bytes, origin: str):
    """Unpickle `data` (read from `origin`, named in errors) admitting only plain containers,
    numbers, str, bytes and numpy arrays. Python 2 strings come back as bytes, as in the
    official CIFAR files (their dict keys are b'data', b'labels', ...)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise GenddError(f"{origin}: unsafe or corrupt pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as e:
        raise GenddError(f"{origin}: corrupt pickle ({type(e).__name__}: {e})") from None

"""Where and how the arithmetic runs, for the evaluator and the generator side alike: the
device, reduced precision, the torch.compile guard, glibc's allocator, seeds and batching.

None of these change a result's recipe; they change how fast it is computed. (The tcmalloc
re-execution of the `gendd` command lives in `gendd.utils.malloc`: it runs before torch is
imported.)
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from typing import Callable

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cpu_bf16_ok() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(device: torch.device, fast: bool) -> torch.dtype | None:
    """The reduced precision the fast path computes in on `device`, or None for fp32."""
    if not fast:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_bf16_ok() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` on `device`; a no-op context for None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Make glibc keep freed memory (mmap threshold 1 GiB, no trimming): the activations of a
    training step are tens of MB, and by default every step returns them to the OS and page
    faults them back. Process-wide; idempotent."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 34)  # M_TRIM_THRESHOLD
        libc.mallopt(-2, 1 << 28)  # M_TOP_PAD
    except (OSError, AttributeError):
        pass
    _ALLOCATOR_TUNED = True


def compile_enabled(device: torch.device) -> bool:
    """Whether the fast path compiles on `device`: GENDD_COMPILE=1 / 0 decides; unset, on the
    CPU only (on a GPU compiling costs more per process than short evaluations gain)."""
    flag = os.environ.get("GENDD_COMPILE")
    if flag is None:
        return device.type == "cpu"
    return flag not in ("0", "false", "no", "")


def compiled(fn: Callable, device: torch.device) -> Callable:
    """`fn` compiled with torch.compile (static shapes) where `compile_enabled(device)`. The
    first time the compiled call raises (no C++ compiler, an unsupported op...), it warns and
    runs `fn` itself from then on."""
    if not compile_enabled(device):
        return fn
    # Every network trained in this process adds compiled entries (one per batch shape) to the
    # same code object; keep room for many before dynamo falls back to eager.
    import torch._dynamo

    cfg = torch._dynamo.config
    cfg.cache_size_limit = max(cfg.cache_size_limit, 256)
    if hasattr(cfg, "accumulated_cache_size_limit"):
        cfg.accumulated_cache_size_limit = max(cfg.accumulated_cache_size_limit, 1024)
    state = {"fn": torch.compile(fn, dynamic=False)}

    def guarded(*args):
        try:
            return state["fn"](*args)
        except Exception as e:  # noqa: BLE001 - no compiler, unsupported op...: run eagerly
            if state["fn"] is fn:
                raise
            warnings.warn(f"torch.compile failed ({type(e).__name__}); running eagerly")
            state["fn"] = fn
            return fn(*args)

    return guarded


def seed_from(generator: torch.Generator) -> int:
    """The next seed drawn from `generator`, for a generator of its own (a network, a DSA
    draw, a round)."""
    return int(torch.randint(2**62, (1,), generator=generator))


def derived_seed(seed: int, *offsets: int) -> int:
    """A seed for one part of a job (a class, a round, a step) from the job's `seed`: parts
    stay independent of how the job is batched or split between processes."""
    return seed * 1_000_003 + sum(offsets)


@torch.inference_mode()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    """`fn` applied to `inputs` in batches of `batch_size` rows, the outputs concatenated on
    the CPU."""
    starts = range(0, len(inputs), batch_size) or [0]  # an empty input: one empty batch
    return torch.cat([fn(inputs[i:i + batch_size]).cpu() for i in starts])

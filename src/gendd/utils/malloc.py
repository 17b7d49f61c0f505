"""Running gendd under tcmalloc where the system has it.

glibc's malloc hands every block above 32 MB straight to the kernel (mmap) and returns it on
free (munmap), so each DM iteration's gigabyte of activations is faulted in page by page
anew: at IPC 50 the kernel's share of DM's CPU time equals the computation's. tcmalloc keeps
freed memory for the next allocation; the results are the same bit for bit (speed: docs/BENCHMARKS.md).
The allocator must be chosen before the process starts, hence a re-execution under
LD_PRELOAD; GENDD_MALLOC=system keeps glibc's."""

from __future__ import annotations

import ctypes.util
from collections.abc import Callable, Mapping

SWITCH = "GENDD_MALLOC"  # "system": no re-execution
_REEXECUTED = "GENDD_MALLOC_REEXECUTED"  # set in the re-executed process: never twice
LIBRARIES = ("tcmalloc_minimal", "tcmalloc")


def tcmalloc_library() -> str | None:
    """The name of an installed tcmalloc library (as the dynamic loader finds it), or None."""
    for name in LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def tcmalloc_environment(environ: Mapping[str, str], find_library: Callable[[], str | None],
                         platform: str) -> dict[str, str] | None:
    """The environment to re-execute gendd in with the library `find_library` names preloaded,
    or None where gendd should run as it is: not Linux, switched off, already re-executed, a
    tcmalloc preloaded by the user, or no library (looked up last: it runs `ldconfig`)."""
    if (platform != "linux" or environ.get(SWITCH, "") == "system"
            or environ.get(_REEXECUTED) or "tcmalloc" in environ.get("LD_PRELOAD", "")):
        return None
    library = find_library()
    if library is None:
        return None
    preload = " ".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
    return {**environ, "LD_PRELOAD": preload, _REEXECUTED: "1"}

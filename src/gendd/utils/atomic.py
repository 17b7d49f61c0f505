"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A crash or kill at any moment leaves either the old file or the new one, never a torn one.
The temporary file lies in a hidden folder of its own beside the target
(`.gendd-tmp-PID-XXXXXXXX/NAME`), so that whatever a writer makes on the way (safetensors
writes its own `.tmpXXXXXX` file, then renames it) is in that folder too. The writer holds a
lock (flock) on the folder while it writes; the kernel drops it when the writer dies, however
it dies, so a folder that nobody holds is a killed writer's: the next atomic write into the
same directory removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

_TEMP = ".gendd-tmp-"


def _try_lock(fd: int) -> bool | None:
    """Lock `fd` (flock, exclusive, at once): True if locked, False if another holds it, None
    where the file system has no locks (some network ones)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def remove_stale_temporaries(directory: Path) -> None:
    """Remove the temporary folders of `atomic_path` in `directory` that no writer holds."""
    for folder in directory.glob(_TEMP + "*"):
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:  # removed meanwhile
            continue
        try:
            if _try_lock(fd):
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def _locked_temporary_folder(directory: Path) -> tuple[Path, int]:
    """A new temporary folder in `directory` and a descriptor holding its lock."""
    while True:  # another writer's clean-up may take the folder before it is locked: again
        folder = Path(tempfile.mkdtemp(prefix=f"{_TEMP}{os.getpid()}-", dir=directory))
        try:
            fd = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _try_lock(fd) is not False and os.path.samestat(os.stat(folder), os.fstat(fd)):
                return folder, fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def _temporary_folder(directory: Path) -> Iterator[Path]:
    """A locked hidden folder in `directory`, removed on exit whatever happens."""
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    folder, lock = _locked_temporary_folder(directory)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)  # after the removal: no clean-up takes a folder still in use


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (of the same name) for `path`; on success it replaces `path`
    atomically. The file gets the permissions of any new file (0666 less the umask), whatever
    the writer gave it (safetensors: 0600)."""
    path = Path(path)
    with _temporary_folder(path.parent) as folder:
        tmp = folder / path.name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder for `path`; on success it takes the place of `path` whole (an
    existing `path` is first moved aside into the hidden folder, and removed with it)."""
    path = Path(path)
    with _temporary_folder(path.parent) as folder:
        tmp = folder / path.name
        tmp.mkdir()
        yield tmp
        if path.exists():
            os.replace(path, folder / (path.name + ".old"))
        os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

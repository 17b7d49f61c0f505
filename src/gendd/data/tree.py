"""Read-only access to a tree of files, from a folder or from inside a zip archive, with one
interface, so that a loader (Tiny-ImageNet, image folders) reads both without extracting.

Paths are relative, '/'-separated. Hidden entries (".name") and macOS's "__MACOSX" are not
listed. `fingerprint()` changes whenever any file that could be read changes (name, size,
modification time): the decode cache is keyed on it.

A link that leads nowhere (broken, or a loop) is listed as a file: reading it fails with
`UnreadableFile`, so that a loader reports it or skips it, never silently leaves it out.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from gendd.errors import GenddError


class UnreadableFile(GenddError):
    """A file of the tree that cannot be read; `what` says why, without the file's name."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")
        self.what = what


def _listed(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def _kind(entry: os.DirEntry) -> str:
    """'dir', 'file' (a link that leads nowhere counts as one) or '' (a FIFO, a device, ...)."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError:  # a loop of links
        return "file"
    return "file" if entry.is_symlink() and not os.path.exists(entry.path) else ""


def _stat_key(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as e:  # a broken or looping link: its target may appear later
        return f"error {e.errno}"
    return f"{st.st_size}\0{st.st_mtime_ns}"


class DirTree:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def where(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def _path(self, rel: str) -> Path:
        """root/rel, for a `rel` that stays inside root (names read from files may not)."""
        if os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
            raise GenddError(f"{self.root}: refusing to read '{rel}', outside this folder")
        return self.root / rel

    def is_dir(self, rel: str) -> bool:
        return self._path(rel).is_dir()

    def is_file(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def _entries(self, rel: str) -> list[os.DirEntry]:
        try:
            with os.scandir(self._path(rel)) as it:
                return sorted((e for e in it if _listed(e.name)), key=lambda e: e.name)
        except OSError as e:
            raise GenddError(f"{self.where(rel)}: cannot list folder ({e.strerror})") from None

    def files(self, rel: str) -> list[str]:
        """Names of the files directly in folder `rel`, sorted."""
        return [e.name for e in self._entries(rel) if _kind(e) == "file"]

    def dirs(self, rel: str) -> list[str]:
        return [e.name for e in self._entries(rel) if _kind(e) == "dir"]

    def read(self, rel: str) -> bytes:
        try:
            return self._path(rel).read_bytes()
        except OSError as e:
            raise UnreadableFile(self.where(rel), f"cannot read file ({e.strerror})") from None

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for top, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                h.update(f"{os.path.relpath(path, self.root)}\0{_stat_key(path)}\n".encode())
        return h.hexdigest()


class ZipTree:
    """The files under `prefix` (e.g. "tiny-imagenet-200/") inside a zip archive."""

    def __init__(self, path: str | os.PathLike, prefix: str = ""):
        self.path = Path(path)
        self.prefix = prefix
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as e:
            raise GenddError(f"{self.path}: not a readable zip archive ({e})") from None
        self._files: dict[str, zipfile.ZipInfo] = {}
        self._children: dict[str, set[str]] = {}
        for info in self._zip.infolist():
            name = info.filename
            if not name.startswith(prefix) or info.is_dir():
                continue
            rel = name[len(prefix):]
            self._files[rel] = info
            parent, _, child = rel.rpartition("/")
            self._children.setdefault(parent, set()).add(child)
            while parent:  # register every ancestor folder
                grand, _, sub = parent.rpartition("/")
                self._children.setdefault(grand, set()).add(sub + "/")
                parent = grand

    def where(self, rel: str = "") -> str:
        return f"{self.path}:{self.prefix}{rel}" if rel else str(self.path)

    @staticmethod
    def _norm(rel: str) -> str:
        return rel.strip("/")

    def is_dir(self, rel: str) -> bool:
        return self._norm(rel) in self._children

    def is_file(self, rel: str) -> bool:
        return self._norm(rel) in self._files

    def files(self, rel: str) -> list[str]:
        return sorted(c for c in self._children.get(self._norm(rel), ())
                      if not c.endswith("/") and _listed(c))

    def dirs(self, rel: str) -> list[str]:
        return sorted(c[:-1] for c in self._children.get(self._norm(rel), ())
                      if c.endswith("/") and _listed(c[:-1]))

    def read(self, rel: str) -> bytes:
        info = self._files.get(self._norm(rel))
        if info is None:
            raise GenddError(f"{self.where(rel)}: no such file in the archive")
        try:
            return self._zip.read(info)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise UnreadableFile(self.where(rel), f"corrupt archive member ({e})") from None

    def fingerprint(self) -> str:
        st = self.path.stat()
        return hashlib.sha256(f"{self.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
                              .encode()).hexdigest()

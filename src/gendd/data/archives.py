"""Archives: reading chosen members of a .tar.gz in one streaming pass, and extracting a tar or
zip archive safely.

Safe extraction refuses a member whose path is absolute or climbs out with '..', a symbolic
link whose target is absolute or contains '..', a hard link to a path that is not a member's,
and anything that is not a plain file, folder or link (devices, FIFOs). Links may thus only
point down from their own folder: however later members add links, every chain of them stays
inside (a link checked only against the folder as it is when extracted could be made to point
outside by a later link on its path). Member paths are also resolved against the folder as it
is on disk, so no member is written through a link to outside. Members before a refused one
stay extracted (inside the target).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

from gendd.errors import GenddError

_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def read_tar_members(path: str | os.PathLike, names: set[str]) -> dict[str, bytes]:
    """The contents of the regular-file members called `names`, reading a (compressed) tar
    archive once from start to end without writing anything to disk."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.name in names and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
    except _TAR_ERRORS as e:
        raise GenddError(f"{path}: corrupt or truncated archive ({e})") from None
    return found


@dataclass
class _Member:
    name: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink" | "other"
    link: str = ""
    open: Callable[[], BinaryIO] | None = None


def _tar_members(tar: tarfile.TarFile) -> Iterator[_Member]:
    for m in tar:
        if m.isreg():
            yield _Member(m.name, "file", open=lambda m=m: tar.extractfile(m))
        elif m.isdir():
            yield _Member(m.name, "dir")
        elif m.issym():
            yield _Member(m.name, "symlink", m.linkname)
        elif m.islnk():
            yield _Member(m.name, "hardlink", m.linkname, open=lambda m=m: tar.extractfile(m))
        else:
            yield _Member(m.name, "other")


def _zip_members(zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            yield _Member(info.filename, "symlink", zf.read(info).decode("utf-8", "replace"))
        elif info.is_dir():
            yield _Member(info.filename, "dir")
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # zips often store no type bits
            yield _Member(info.filename, "other")
        else:
            yield _Member(info.filename, "file", open=lambda info=info: zf.open(info))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _target(root: str, name: str, archive) -> str:
    """Where member `name` lands, with every link already on disk resolved; refused if that
    is outside `root`."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise GenddError(f"{archive}: refusing member '{name}' (absolute path or '..')")
    parent = os.path.realpath(os.path.join(root, *parts[:-1]))
    dest = os.path.join(parent, parts[-1]) if parts else root
    if not _inside(parent, root) or not _inside(os.path.realpath(dest), root):
        raise GenddError(f"{archive}: refusing member '{name}' (it would land outside {root})")
    return dest


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a .zip or a (compressed) tar archive into folder `dest`, safely (see above)."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _extract(_zip_members(zf), root, archive)
        else:
            with tarfile.open(archive, mode="r:*") as tar:
                _extract(_tar_members(tar), root, archive)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise GenddError(f"{archive}: corrupt or unreadable archive ({e})") from None
    except OSError as e:
        raise GenddError(f"{archive}: cannot extract into {dest} ({e})") from None
    return dest


def _extract(members: Iterator[_Member], root: str, archive) -> None:
    for m in members:
        if m.kind == "other":
            raise GenddError(f"{archive}: refusing member '{m.name}' (not a file, folder or link)")
        dest = _target(root, m.name, archive)
        if m.kind == "dir":
            os.makedirs(dest, exist_ok=True)
            continue
        if dest == root:
            raise GenddError(f"{archive}: refusing member '{m.name}' (a file named like the folder)")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if m.kind == "symlink":
            target = m.link.replace("\\", "/")
            if not target or target.startswith("/") or ".." in PurePosixPath(target).parts:
                raise GenddError(f"{archive}: refusing link '{m.name}' -> '{m.link}' (links "
                                 "may only point down into the folder: no absolute path or '..')")
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(m.link, dest)
            continue
        if m.kind == "hardlink":  # a tar hard link names another member: copy its content
            _target(root, m.link, archive)
        if os.path.islink(dest):  # never write through a link left by an earlier member
            os.unlink(dest)
        with m.open() as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)

"""Downloading a file: checksum verified, resumable, atomic.

Bytes go to `<dest>.part`; an interrupted transfer keeps it, and the next call asks the server
for the rest (HTTP Range) and appends, or starts over if the server ignores the range. Only a
complete file whose md5 matches is renamed to `dest` (os.replace, atomic), so `dest` is never
partial or wrong. (gendd.utils.atomic deletes its temporary file on failure, which would
throw away what a resume needs; hence the separate `.part` file.)
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from gendd.data.checksums import md5_of
from gendd.errors import GenddError

CHUNK = 1 << 20


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "gendd", **({"Range": f"bytes={offset}-"} if offset else {})}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part` (or rewrite it if the server sends everything)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: `part` is complete (or too long)
            return
        raise
    with resp:
        if offset and resp.status != 206:
            offset = 0  # the server ignored the range: start over
        total = resp.length + offset if resp.length is not None else None
        with open(part, "ab" if offset else "wb") as out, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, disable=None,
                     desc=part.name[:-5], leave=False) as bar:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    if total is not None and part.stat().st_size < total:
        raise ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")


def _kept(part: Path) -> str:
    """What a failed download leaves for the next try, in words."""
    have = part.stat().st_size if part.exists() else 0
    if have:
        return f"{have} bytes kept in {part}, run the same command again to resume"
    part.unlink(missing_ok=True)
    return "nothing received, run the same command again to retry"


def download(url: str, dest: str | os.PathLike, md5: str, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` unless `dest` already holds the file with this md5."""
    dest = Path(dest)
    if dest.is_file() and md5_of(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, part, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise GenddError(f"{url}: download failed ({reason}); {_kept(part)}") from None
    digest = md5_of(part)
    if digest != md5:
        part.unlink()
        raise GenddError(f"{url}: downloaded file has md5 {digest}, expected {md5} (corrupt "
                         "transfer or wrong file; removed, run again to retry)")
    os.replace(part, dest)
    return dest

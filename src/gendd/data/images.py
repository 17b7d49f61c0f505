"""Decoding many image files (JPEG, PNG, anything Pillow reads) into one uint8 array, under an
explicit policy for the files that do not fit:

- a file that is not a readable image (or cannot be read at all, as a broken link): fail
  (default) or skip it with a warning;
- images of different sizes: fail (default), or resize every image to a given size (scaled to
  cover it, then centre-cropped, so the aspect ratio is kept);
- images of different modes: fail (default; every image must be all grey 'L' or all 'RGB'),
  or convert every image to a given mode ('RGB' or 'L').
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from gendd.data.base import warn
from gendd.data.tree import UnreadableFile
from gendd.errors import GenddError

MODES = {"L": 1, "RGB": 3}
BAD_FILE_POLICIES = ("fail", "skip")
_MAX_WARNINGS = 20


@dataclass(frozen=True)
class ImagePolicy:
    size: tuple[int, int] | None = None  # (H, W) every image must have; None: the first's
    resize: bool = False                 # resize images of another size instead of failing
    mode: str | None = None              # 'L' | 'RGB'; None: the first image's
    convert: bool = False                # convert images of another mode instead of failing
    bad_files: str = "fail"              # 'fail' | 'skip'
    hints: bool = True                   # name the options that get past an error (imagefolder)


class _BadFile(Exception):
    """What is wrong with a file, as the end of a sentence that starts with its name."""


def _open(tree, rel: str) -> Image.Image:
    try:
        data = tree.read(rel)
    except UnreadableFile as e:
        raise _BadFile(e.what) from None
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except UnidentifiedImageError:
        raise _BadFile("not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _BadFile(f"not a readable image ({str(e) or type(e).__name__})") from None


def _hint(policy: ImagePolicy, text: str) -> str:
    return text if policy.hints else ""


def _cover_resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    h, w = size
    scale = max(h / img.height, w / img.width)
    sh, sw = max(h, round(img.height * scale)), max(w, round(img.width * scale))
    img = img.resize((sw, sh), Image.Resampling.LANCZOS)
    top, left = (sh - h) // 2, (sw - w) // 2
    return img.crop((left, top, left + w, top + h))


def decode_images(tree, paths: Sequence[str], policy: ImagePolicy, desc: str = "decode"
                  ) -> tuple[np.ndarray, list[int]]:
    """Decode the files `paths` of `tree` (a DirTree or ZipTree) into N x C x H x W uint8.

    Returns the array and the indices into `paths` of the images kept (all of them unless
    bad files are skipped). Errors name the file and what to pass to get past it."""
    size, mode = policy.size, policy.mode
    out: np.ndarray | None = None
    kept: list[int] = []
    skipped = 0
    for i, rel in enumerate(tqdm(paths, desc=desc, unit="img", disable=None, leave=False)):
        try:
            img = _open(tree, rel)
        except _BadFile as e:
            if policy.bad_files == "fail":
                raise GenddError(f"{tree.where(rel)}: {e}"
                                 + _hint(policy, "; to skip such files pass bad=skip")) from None
            skipped += 1
            if skipped <= _MAX_WARNINGS:
                warn(f"skipped {tree.where(rel)}: {e}")
            continue
        if mode is None:
            if img.mode not in MODES:
                raise GenddError(f"{tree.where(rel)}: image mode {img.mode}"
                                 + _hint(policy, "; pass mode=RGB or mode=L to convert"))
            mode = img.mode
        if img.mode != mode:
            if not policy.convert:
                raise GenddError(f"{tree.where(rel)}: image mode {img.mode} differs from {mode} of "
                                 "the others" + _hint(policy, "; pass mode=RGB or mode=L to convert"))
            img = img.convert(mode)
        if size is None:
            size = (img.height, img.width)
        if (img.height, img.width) != size:
            if not policy.resize:
                raise GenddError(f"{tree.where(rel)}: image is {img.height}x{img.width}, the "
                                 f"others {size[0]}x{size[1]}"
                                 + _hint(policy, "; pass size=HxW to resize every image"))
            img = _cover_resize(img, size)
        if out is None:
            out = np.empty((len(paths), MODES[mode], *size), np.uint8)
        arr = np.asarray(img, dtype=np.uint8)
        out[len(kept)] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        kept.append(i)
    if skipped > _MAX_WARNINGS:
        warn(f"skipped {skipped - _MAX_WARNINGS} more unreadable files")
    if out is None:
        out = np.empty((0, MODES.get(mode or "L", 1), *(size or (0, 0))), np.uint8)
    return out[:len(kept)], kept

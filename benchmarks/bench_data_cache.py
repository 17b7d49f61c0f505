"""Issue 4's target: the second load of Tiny-ImageNet (from the decode cache) is >= 10x faster
than the first (decoding every JPEG).

Writes a synthetic Tiny-ImageNet-200 tree of real 64x64 JPEG files (default: the real counts,
200 classes x 500 training images + 10,000 val images), then loads it twice through
`gendd.data.load_dataset` with an empty cache directory, and prints both wall times.

    python benchmarks/bench_data_cache.py [--per-class 500] [--val-per-class 50] [--root DIR]

The files were just written, so the first load reads them from the page cache: its time is
the decoding alone, a lower bound for a cold disk (which makes the ratio conservative).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_tree(root: Path, classes: int, per_class: int, val_per_class: int, seed: int = 0) -> int:
    """A tiny-imagenet-200/ layout; JPEGs drawn from a pool of distinct noisy images."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(256):
        smooth = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(smooth).resize((64, 64), Image.Resampling.BICUBIC))
        img = np.clip(img + rng.integers(-25, 25, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=75)
        pool.append(buf.getvalue())
    wnids = [f"n{10_000_000 + k:08d}" for k in range(classes)]
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    (root / "words.txt").write_text("".join(f"{w}\tclass {k}\n" for k, w in enumerate(wnids)))
    n = 0
    for w in wnids:
        folder = root / "train" / w / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{w}_{i}.JPEG").write_bytes(pool[n % len(pool)])
            n += 1
    (root / "val" / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(val_per_class * classes):
        (root / "val" / "images" / f"val_{i}.JPEG").write_bytes(pool[(n + i) % len(pool)])
        lines.append(f"val_{i}.JPEG\t{wnids[i % classes]}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return n + len(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--root", type=Path, default=None, help="where to write the tree (default: a temp dir)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (a.root or Path(tmp)) / "tiny-imagenet-200"
        os.environ["GENDD_CACHE"] = str(Path(tmp) / "cache")
        t = time.perf_counter()
        files = write_tree(root, a.classes, a.per_class, a.val_per_class)
        print(f"wrote {files} JPEGs in {time.perf_counter() - t:.1f} s")

        from gendd.data import load_dataset

        times = []
        for label in ("first load (decode + write cache)", "second load (cache)"):
            t = time.perf_counter()
            ds = load_dataset("tiny-imagenet", root)
            times.append(time.perf_counter() - t)
            print(f"{label}: {times[-1]:.2f} s  train {tuple(ds.train_images.shape)} "
                  f"test {tuple(ds.test_images.shape)}")
        cache = next(Path(os.environ["GENDD_CACHE"]).glob("*.safetensors"))
        print(f"cache file: {cache.stat().st_size / 2**20:.0f} MiB")
        print(f"speed-up: {times[0] / times[1]:.1f}x (target >= 10x)")
        print(f"| {time.strftime('%Y-%m-%d')} | {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs | {files} | {times[0]:.1f} | {times[1]:.2f} | "
              f"{times[0] / times[1]:.1f}x |")


if __name__ == "__main__":
    main()

"""The report's pictures: a set's images tiled by class (PIL), training curves and confusion
matrices (matplotlib on the Agg backend, so that no display is needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gendd.sets import DistilledSet
from gendd.utils.atomic import atomic_path

# Curve panels: title, the (stage, metrics.jsonl key) series drawn in it, log scale.
CURVE_PANELS = (
    ("loss", (("autoencoder", "loss"), ("denoiser", "loss")), True),
    ("learning rate", (("autoencoder", "lr"), ("denoiser", "lr")), False),
    ("Frechet distance (classifier features)", (("denoiser", "fd_classifier"),), False),
    ("FID (Inception)", (("denoiser", "fid_inception"),), False),
    ("autoencoder test PSNR (dB)", (("autoencoder", "test_psnr_db"),), False),
)


def display_scale(height: int) -> int:
    """Nearest-neighbour upscaling that shows small images (28 or 32 pixels) at about 64."""
    return max(1, 64 // max(1, height))


def tile(rows: list[torch.Tensor], shape: tuple[int, int, int], cols: int,
         scale: int) -> Image.Image:
    """Rows of uint8 C x H x W images (up to `cols` each) on white, 1-pixel gaps, upscaled."""
    c, h, w = shape
    canvas = np.full((len(rows) * (h + 1) + 1, max(1, cols) * (w + 1) + 1, c), 255, np.uint8)
    for i, imgs in enumerate(rows):
        for j, img in enumerate(imgs[:cols]):
            y, x = 1 + i * (h + 1), 1 + j * (w + 1)
            canvas[y:y + h, x:x + w] = img.permute(1, 2, 0).numpy()
    im = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def class_grid(dset: DistilledSet, num_classes: int, max_per_class: int = 20,
               scale: int = 2) -> Image.Image:
    """One row per class, up to `max_per_class` images each."""
    cols = min(max_per_class, max(dset.counts_per_class(num_classes)) or 1)
    rows = [dset.images[dset.labels == k] for k in range(num_classes)]
    return tile(rows, tuple(dset.images.shape[1:]), cols, scale)


def class_strip(dset: DistilledSet, label: int, cols: int) -> Image.Image:
    """The first `cols` images of class `label` in one row, as wide as the set's largest class
    (so that the rows of a set line up)."""
    cols = min(cols, int(torch.bincount(dset.labels).max()) if len(dset) else 1)
    return tile([dset.images[dset.labels == label]], tuple(dset.images.shape[1:]), cols,
                display_scale(dset.images.shape[2]))


def class_mosaic(dset: DistilledSet, num_classes: int) -> Image.Image:
    """The first image of every class (blank where a class has none), 10 or 20 classes a row:
    the whole set at a glance however many classes it has."""
    per_row = 10 if num_classes <= 100 else 20
    blank = torch.full(tuple(dset.images.shape[1:]), 255, dtype=torch.uint8)
    firsts = []
    for k in range(num_classes):
        imgs = dset.images[dset.labels == k]
        firsts.append(imgs[0] if len(imgs) else blank)
    rows = [torch.stack(firsts[i:i + per_row]) for i in range(0, num_classes, per_row)]
    return tile(rows, tuple(dset.images.shape[1:]), min(per_row, num_classes),
                display_scale(dset.images.shape[2]))


def save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def _series(records: list[dict], stage: str, key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in records
            if r.get("stage") == stage and isinstance(r.get(key), (int, float))
            and isinstance(r.get("step"), (int, float))]


def plot_curves(records: list[dict], path: Path) -> list[str]:
    """The panels of CURVE_PANELS that have data, step on the x-axis, saved to `path`.
    Returns the titles of the panels drawn (none: nothing written)."""
    panels = [(title, [(s, k, _series(records, s, k)) for s, k in keys], log)
              for title, keys, log in CURVE_PANELS]
    panels = [(t, [x for x in series if x[2]], log) for t, series, log in panels]
    panels = [p for p in panels if p[1]]
    if not panels:
        return []
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, series, log) in zip(axes.flat, panels):
        for stage, key, pts in series:
            ax.plot(*zip(*pts), marker="o" if len(pts) < 30 else None, ms=3, label=stage)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if log and all(v > 0 for *_, pts in series for _, v in pts):
            ax.set_yscale("log")
        if len(series) > 1:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)
    return [t for t, *_ in panels]


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (true class down, predicted across); class names on the
    axes up to 20 classes, counts in the cells up to 12."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=float)
    k = len(counts)
    share = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 5.5 if k <= 20 else 8.0
    with plt.rc_context({"text.parse_math": False}):  # a '$' in a class name is just text
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
        fig.colorbar(im, ax=ax, label="% of the true class", fraction=0.046, pad=0.04)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if k <= 20:
            ax.set_xticks(range(k), [n[:18] for n in class_names[:k]], rotation=60,
                          ha="right", fontsize=7)
            ax.set_yticks(range(k), [n[:18] for n in class_names[:k]], fontsize=7)
        if k <= 12:
            for (i, j), v in np.ndenumerate(counts):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 60 else "black")
        fig.tight_layout()
        _save_figure(fig, path)

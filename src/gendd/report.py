"""Looking at a run: class grids, training curves and result tables."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from PIL import Image

from gendd.sets import DistilledSet, load_set
from gendd.utils.atomic import atomic_path, write_text


def class_grid(dset: DistilledSet, num_classes: int, max_per_class: int = 20,
               scale: int = 2) -> Image.Image:
    """One row per class, up to `max_per_class` images each, 1-pixel gaps."""
    _, c, h, w = dset.images.shape
    cols = min(max_per_class, max(dset.counts_per_class(num_classes)) or 1)
    canvas = np.full((num_classes * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for k in range(num_classes):
        imgs = dset.images[dset.labels == k][:cols]
        for j, img in enumerate(imgs):
            y, x = 1 + k * (h + 1), 1 + j * (w + 1)
            canvas[y:y + h, x:x + w] = img.permute(1, 2, 0).numpy()
    im = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def save_png(image: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl; where a step was logged twice (a resumed run), the last record wins."""
    if not path.is_file():
        return []
    records: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        records.setdefault((r.get("stage"), r.get("step")), {}).update(r)
    return sorted(records.values(), key=lambda r: (str(r.get("stage")), r.get("step") or 0))


def plot_curves(records: list[dict], path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(stage, key) for stage, key in (("autoencoder", "loss"), ("denoiser", "loss"),
                                              ("denoiser", "fd_classifier"),
                                              ("denoiser", "fid_inception"))
              if any(r.get("stage") == stage and key in r for r in records)]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (stage, key) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in records if r.get("stage") == stage and key in r]
        ax.plot(*zip(*pts), marker="o" if key.startswith(("fd", "fid")) else None, ms=3)
        ax.set_title(f"{stage}: {key}")
        ax.set_xlabel("step")
        if key == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def results_table(eval_files: list[Path]) -> list[dict]:
    rows = []
    for f in sorted(eval_files):
        r = json.loads(f.read_text())
        acc = r["accuracy"]
        rows.append({"set": f.stem, "model": r.get("model", "convnet"), "epochs": r.get("epochs"),
                     "rounds": len(acc["rounds"]), "accuracy": f"{acc['mean']:.2f} ± {acc['std']:.2f}",
                     "wall_s": f"{r.get('wall_time_s', 0):.0f}"})
    return rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_no evaluations yet_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_page(title: str, rows: list[dict], images: list[str]) -> str:
    cols = list(rows[0]) if rows else []
    table = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    imgs = "".join(f'<figure><img src="{html.escape(i)}"><figcaption>{html.escape(i)}</figcaption></figure>'
                   for i in images)
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd}"
            "img{image-rendering:pixelated;max-width:100%}</style>"
            f"<h1>{html.escape(title)}</h1><table><tr>{table}</tr>{body}</table>{imgs}")


def write_report(run: Path, num_classes: int | None = None) -> Path:
    """Grids for every set in run/distilled, curves from metrics.jsonl, tables of run/eval."""
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for set_file in sorted((run / "distilled").glob("*.safetensors")):
        dset = load_set(set_file)
        k = num_classes or len(dset.metadata.get("class_names", [])) or int(dset.labels.max()) + 1
        name = f"grid_{set_file.stem}.png"
        save_png(class_grid(dset, k), out / name)
        images.append(name)
    if plot_curves(read_metrics(run / "metrics.jsonl"), out / "curves.png"):
        images.append("curves.png")
    rows = results_table(list((run / "eval").glob("*.json")))
    write_text(out / "results.md", f"# {run.name}\n\n" + markdown_table(rows)
               + "".join(f"\n![{i}]({i})\n" for i in images))
    write_text(out / "index.html", html_page(run.name, rows, images))
    return out

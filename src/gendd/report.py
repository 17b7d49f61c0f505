"""Looking at a run: report/index.html, one self-contained page (its PNGs beside it, nothing
fetched from the network) that shows what the run holds and says what it still lacks.

Every string that comes from a run (class names, set names, metadata, configuration) is
HTML-escaped: class names come from user-supplied folders and files."""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from gendd.errors import GenddError
from gendd.report_plots import (class_grid, class_mosaic, class_strip, display_scale,
                                plot_confusion, plot_curves, save_png)
from gendd.report_published import METHODS, SOURCES, published
from gendd.sets import DistilledSet, load_set
from gendd.utils.atomic import write_text

__all__ = ["class_grid", "save_png", "write_report"]  # class_grid, save_png: gendd.export's

MAX_CLASS_ROWS = 20  # classes drawn one row each; the mosaic and the grid file show all
MAX_PER_ROW = 10  # images of a class drawn in its row
GRID_PER_CLASS = 10  # images of a class in the full grid file (all classes)
EXTREMES = 10  # worst and best classes listed when there are more than MAX_CLASS_ROWS
SAMPLED = ".sampled"  # NAME.sampled.safetensors: NAME's samples before refinement


class Markup(str):
    """HTML built here from escaped parts: inserted into the page as it is."""


def esc(value) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=True)


def img(src: str, alt: str) -> Markup:
    return Markup(f'<img src="{esc(quote(src))}" alt="{esc(alt)}">')


def table(header: list[str], rows: list[list], cls: str = "") -> Markup:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return Markup(f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                  "</table>")


def fmt_acc(acc: dict) -> str:
    return f"{acc['mean']:.2f} ± {acc['std']:.2f}"


@dataclass
class RunView:
    """What a run directory holds, read once; unreadable files are noted in `problems`."""
    run: Path
    dataset: str = ""
    config_text: str = ""
    config: dict = field(default_factory=dict)
    sets: dict[str, DistilledSet] = field(default_factory=dict)  # file stem -> set
    evals: dict[str, dict] = field(default_factory=dict)  # eval/NAME.json stem -> result
    records: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    num_classes: int = 0

    def class_names(self, metadata: dict | None = None, k: int | None = None) -> list[str]:
        """`metadata`'s k class names, else those of any set or evaluation, else numbers."""
        k = self.num_classes if k is None else k
        metas = [metadata or {}] + [s.metadata for s in self.sets.values()] + \
            [eval_metadata(e) for e in self.evals.values()]
        for meta in metas:
            names = meta.get("class_names")
            if isinstance(names, list) and len(names) >= k:
                return [str(n) for n in names]
        return [str(c) for c in range(k)]

    def finals(self) -> list[str]:
        """Set names to show: refined or sampled-only sets, not the samples of a refined one."""
        return [n for n in self.sets if not (n.endswith(SAMPLED) and n[:-len(SAMPLED)]
                                             in self.sets)]


def eval_metadata(result: dict) -> dict:
    """The metadata of the set an evaluation result was made from ({} for a submission)."""
    meta = (result.get("source") or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


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
        if isinstance(r, dict) and isinstance(r.get("step"), (int, float)):
            records.setdefault((r.get("stage"), r.get("step")), {}).update(r)
    return sorted(records.values(), key=lambda r: (str(r.get("stage")), r["step"]))


def _read_json(path: Path, problems: list[str]) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problems.append(f"{path.name}: unreadable ({e})")
        return {}
    return data if isinstance(data, dict) else {}


def read_run(run: Path, num_classes: int | None = None) -> RunView:
    import yaml

    view = RunView(run, records=read_metrics(run / "metrics.jsonl"))
    if (run / "config.yaml").is_file():
        view.config_text = (run / "config.yaml").read_text()
        try:
            config = yaml.safe_load(view.config_text)
        except yaml.YAMLError as e:
            config = None
            view.problems.append(f"config.yaml: unreadable ({e})")
        view.config = config if isinstance(config, dict) else {}
        view.dataset = str(view.config.get("dataset", ""))
    for path in sorted((run / "distilled").glob("*.safetensors")):
        try:
            view.sets[path.name[:-len(".safetensors")]] = load_set(path)
        except GenddError as e:
            view.problems.append(str(e))
    for path in sorted((run / "eval").glob("*.json")):
        result = _read_json(path, view.problems)
        acc = result.get("accuracy")
        if isinstance(acc, dict) and all(isinstance(acc.get(k), (int, float))
                                         for k in ("mean", "std")):
            view.evals[path.stem] = result
        elif result:
            view.problems.append(f"{path.name}: not an evaluation result (no accuracy)")
    if (run / "summary.json").is_file():
        view.summary = _read_json(run / "summary.json", view.problems)
    view.num_classes = num_classes or _count_classes(view)
    return view


def _count_classes(view: RunView) -> int:
    counts = [len(s.metadata.get("class_names") or []) or int(s.labels.max()) + 1
              for s in view.sets.values() if len(s)]
    counts += [len(e.get("per_class_accuracy") or e.get("counts_per_class") or [])
               for e in view.evals.values()]
    return max(counts, default=0)


def write_report(run: Path, num_classes: int | None = None) -> Path:
    """Write run/report: index.html with its PNGs, and results.md (the accuracy table)."""
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # pictures of an earlier report
        stale.unlink()
    shutil.rmtree(out / "sets", ignore_errors=True)
    view = read_run(run, num_classes)
    write_text(out / "index.html", page(view, out))
    write_text(out / "results.md", f"# {run.name}\n\n" + markdown_table(results_rows(view)))
    return out


def results_rows(view: RunView) -> list[dict]:
    rows = []
    for name, r in view.evals.items():
        rows.append({"set": name, "model": r.get("model", "convnet"), "epochs": r.get("epochs"),
                     "rounds": len(r["accuracy"].get("rounds", [])),
                     "accuracy": fmt_acc(r["accuracy"]),
                     "wall_s": f"{r.get('wall_time_s', 0):.0f}"})
    return rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_no evaluations yet_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The page's sections


def page(view: RunView, out: Path) -> str:
    sections = [("status", "What this run holds", status_section(view)),
                ("accuracy", "Accuracy", accuracy_section(view)),
                ("sets", "Distilled sets", sets_section(view, out)),
                ("classes", "Per-class accuracy and confusion", classes_section(view, out)),
                ("curves", "Training curves", curves_section(view, out)),
                ("times", "Stage times", times_section(view)),
                ("config", "Configuration", config_section(view))]
    nav = " · ".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{esc(title)}</h2>{content}</section>'
                   for key, title, content in sections)
    sub = f"{view.dataset or 'unknown data set'}, {view.num_classes} classes"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>gendd run "
            f"{esc(view.run.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>gendd run {esc(view.run.name)}</h1><p class=sub>{esc(sub)}</p>"
            f"<nav>{nav}</nav>{body}</body></html>\n")


CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}"
       "h1{margin-bottom:.1em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}"
       ".sub,.note,figcaption{color:#555;font-size:.9em}.sub{margin-top:0}"
       "table{border-collapse:collapse;margin:.5em 0 1em}th{background:#f3f3f3}"
       "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
       "img{image-rendering:pixelated;max-width:100%;vertical-align:middle}"
       ".figs{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}figure{margin:0}"
       ".missing{background:#fff6d6;border-left:4px solid #e0a800;padding:.4em .8em}"
       ".bar{display:inline-block;height:.8em;background:#4a7fc1;margin-right:.4em}"
       "pre{background:#f6f6f6;padding:.8em;overflow:auto;max-height:30em}")


def missing_box(lines: list[str]) -> Markup:
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return Markup(f'<div class="missing"><strong>Missing</strong><ul>{items}</ul></div>')


def status_section(view: RunView) -> Markup:
    run, ds = view.run, view.dataset or "DATASET"
    have = [f"{name}: trained" for name in ("autoencoder", "denoiser") if (run / name).is_dir()]
    have += ["real-data statistics: stored"] if (run / "statistics.safetensors").is_file() else []
    have += [f"training log: {len(view.records)} logged steps"] if view.records else []
    have += [f"distilled sets: {', '.join(view.sets)}"] if view.sets else []
    have += [f"evaluations: {', '.join(view.evals)}"] if view.evals else []
    missing = []
    if not (run / "autoencoder").is_dir():
        missing.append("the autoencoder is not trained (no autoencoder/): `gendd train` trains it")
    elif not (run / "denoiser").is_dir():
        missing.append("the denoiser is not trained (no denoiser/): the run stopped after the "
                       "autoencoder; the same `gendd train` command continues it")
    if not view.records:
        missing.append("no training curves: metrics.jsonl is missing or empty")
    if not view.sets:
        missing.append(f"no distilled set (distilled/ is empty): `gendd generate {run} --ipc 10`")
    missing += [f"{n}: its refinement did not finish; only the samples before refinement exist"
                for n in view.finals() if n.endswith(SAMPLED)]
    unevaluated = [n for n in view.finals() if n not in view.evals]
    missing += [f"{n} is not evaluated: `gendd evaluate {run}/distilled/{n}.safetensors "
                f"--dataset {ds} --json-out {run}/eval/{n}.json`" for n in unevaluated]
    missing += view.problems
    lines = "".join(f"<li>{esc(h)}</li>" for h in have) or "<li>nothing yet</li>"
    return Markup(f"<ul>{lines}</ul>" + (missing_box(missing) if missing else
                                         "<p>Nothing is missing.</p>"))


def eval_ipc(result: dict) -> tuple[int | None, str]:
    """Images per class of an evaluated set, and how to show it (a range if unequal)."""
    counts = result.get("counts_per_class") or []
    if not counts:
        return None, "?"
    lo, hi = min(counts), max(counts)
    return lo, str(lo) if lo == hi else f"{lo}–{hi}"


def accuracy_section(view: RunView) -> Markup:
    """Every evaluation beside random real images under the same protocol and the published
    figures at the same IPC."""
    if not view.evals:
        return missing_box(["no evaluation yet (eval/ holds no result): see above"])
    key = (lambda r: (eval_ipc(r)[0], r.get("model"), r.get("epochs")))
    randoms = {key(r): r for r in view.evals.values() if eval_metadata(r).get("method") == "random"}
    rows = []
    for name, r in view.evals.items():
        ipc, ipc_text = eval_ipc(r)
        acc, rnd = r["accuracy"], randoms.get(key(r))
        pubs = [published(view.dataset, m, ipc) for m in METHODS]
        rows.append([name, ipc_text, fmt_acc(acc),
                     f"{len(acc.get('rounds', []))}: "
                     + ", ".join(f"{v:.2f}" for v in acc.get("rounds", [])),
                     f"{r.get('model', 'convnet')}, {r.get('epochs')} epochs",
                     fmt_acc(rnd["accuracy"]) if rnd else "not evaluated",
                     *["–" if v is None else f"{v:.1f}" for v in pubs]])
    header = ["set", "images per class", "accuracy (%)", "rounds", "protocol",
              "random real, here", *[f"{m}, published" for m in METHODS]]
    note = ("Accuracy: mean ± std over rounds of fresh ConvNets trained on the set, top-1 on "
            "the real test set. Random real, here: a set of random real images (made by gendd "
            "baseline random) evaluated with the same IPC, model and epochs into eval/. Published: "
            + SOURCES)
    return Markup(table(header, rows, "accuracy") + f"<p class=note>{esc(note)}</p>")


def set_summary(dset: DistilledSet, k: int) -> str:
    meta, counts = dset.metadata, dset.counts_per_class(k)
    parts = [f"{len(dset)} images, {max(counts, default=0)} per class"]
    if isinstance(meta.get("method"), str):
        parts.append(f"method {meta['method']}")
    sampler = meta.get("sampler")
    if isinstance(sampler, dict):
        parts.append(f"sampled with {sampler.get('solver')}, {sampler.get('steps')} steps, "
                     f"guidance {sampler.get('guidance')}")
    refine = meta.get("refine")
    if isinstance(refine, dict):
        parts.append(f"refined by DM: {refine.get('iterations')} iterations in "
                     f"{refine.get('wall_time_s', 0):.1f} s")
    if "time_budget_s" in meta:
        parts.append(f"time budget {meta['time_budget_s']:g} s: IPC {meta.get('ipc')} reached "
                     f"in {meta.get('generation_wall_time_s', 0):.1f} s "
                     f"({meta.get('rounds')} rounds)")
    return "; ".join(parts)


def set_images(view: RunView, name: str, out: Path) -> Markup:
    """A set, and its samples before refinement where kept, by class: one image per class, then
    one row per class for the first MAX_CLASS_ROWS classes; full grids as files."""
    k, height = view.num_classes, view.sets[name].images.shape[2]
    shown = [n for n in (name, name + SAMPLED) if n in view.sets]
    labels = {n: "before refinement" if n.endswith(SAMPLED) else
              "after refinement" if len(shown) > 1 else "set" for n in shown}
    figures, links = [], []
    for n in shown:
        save_png(class_mosaic(view.sets[n], k), out / "sets" / n / "mosaic.png")
        save_png(class_grid(view.sets[n], k, GRID_PER_CLASS, display_scale(height)),
                 out / f"grid_{n}.png")
        figures.append(f"<figure>{img(f'sets/{n}/mosaic.png', f'{n}: one image per class')}"
                       f"<figcaption>{esc(labels[n])}: one image per class</figcaption></figure>")
        links.append(f'<a href="{esc(quote(f"grid_{n}.png"))}">grid_{esc(n)}.png</a>')
    names = view.class_names(view.sets[name].metadata)
    rows = []
    for c in range(min(k, MAX_CLASS_ROWS)):
        rows.append([names[c]])
        for n in shown:
            save_png(class_strip(view.sets[n], c, MAX_PER_ROW), out / "sets" / n / f"class_{c}.png")
            rows[-1].append(img(f"sets/{n}/class_{c}.png", f"{names[c]} ({labels[n]})"))
    ipc = max(view.sets[name].counts_per_class(k), default=0)
    note = f"Rows: the first {MAX_CLASS_ROWS} of {k} classes" if k > MAX_CLASS_ROWS else \
        f"Rows: all {k} classes"
    note += f", the first {MAX_PER_ROW} of {ipc} images each" if ipc > MAX_PER_ROW else ""
    return Markup(f'<div class="figs">{"".join(figures)}</div>'
                  + table(["class"] + [labels[n] for n in shown], rows, "classes")
                  + f"<p class=note>{esc(note)}. Full grids (up to {GRID_PER_CLASS} images a "
                    f"class): {', '.join(links)}.</p>")


def sets_section(view: RunView, out: Path) -> Markup:
    if not view.sets:
        return missing_box(["no distilled set yet: see above"])
    return Markup("".join(f"<h3>{esc(n)}</h3><p>{esc(set_summary(view.sets[n], view.num_classes))}"
                          f"</p>{set_images(view, n, out)}" for n in view.finals()))


def per_class_table(per_class: list[float], names: list[str]) -> Markup:
    """Every class up to MAX_CLASS_ROWS; beyond, the EXTREMES worst and best."""
    def row(c):
        return [names[c], Markup(f'<span class="bar" style="width:{per_class[c]:.0f}px">'
                                 f"</span>{per_class[c]:.1f}")]

    if len(per_class) <= MAX_CLASS_ROWS:
        return table(["class", "accuracy (%)"], [row(c) for c in range(len(per_class))])
    ranked = sorted(range(len(per_class)), key=lambda c: per_class[c])
    median = sorted(per_class)[len(per_class) // 2]
    return Markup(f"<p class=note>{len(per_class)} classes, median {median:.1f} %: the "
                  f"{EXTREMES} worst and the {EXTREMES} best</p><div class=figs>"
                  + table(["worst classes", "accuracy (%)"], [row(c) for c in ranked[:EXTREMES]])
                  + table(["best classes", "accuracy (%)"],
                          [row(c) for c in reversed(ranked[-EXTREMES:])]) + "</div>")


def classes_section(view: RunView, out: Path) -> Markup:
    if not view.evals:
        return missing_box(["no evaluation yet: see above"])
    parts = []
    for name, r in view.evals.items():
        per_class, confusion = r.get("per_class_accuracy"), r.get("confusion")
        parts.append(f"<h3>{esc(name)}</h3>")
        if not per_class or not confusion:
            parts.append(missing_box([f"{name}: per-class accuracy and confusion not recorded "
                                      "(evaluated by an earlier gendd): evaluate it again"]))
            continue
        names = view.class_names(eval_metadata(r), len(per_class))
        plot_confusion(confusion, names, out / f"confusion_{name}.png")
        rounds = len(r["accuracy"].get("rounds", []))
        parts.append(f'<div class="figs"><div>{per_class_table(per_class, names)}</div><figure>'
                     f"{img(f'confusion_{name}.png', f'confusion matrix of {name}')}<figcaption>"
                     f"confusion on the test set, {rounds} round(s) summed</figcaption></figure>"
                     "</div>")
    return Markup("".join(parts))


def curves_section(view: RunView, out: Path) -> Markup:
    drawn = plot_curves(view.records, out / "curves.png")
    if not drawn:
        return missing_box(["no training curves: metrics.jsonl is missing or empty"])
    fd_every = (view.config.get("train") or {}).get("fd_every")
    caption = (f"{', '.join(drawn)}; the step on the x-axis (each stage counts its own steps)"
               + (f"; the Frechet distance every {fd_every} denoiser steps (train.fd_every)"
                  if fd_every else ""))
    return Markup(f"<figure>{img('curves.png', 'training curves')}"
                  f"<figcaption>{esc(caption)}</figcaption></figure>")


STAGE_NAMES = {"autoencoder_s": "autoencoder training", "classifier_s": "real-data classifier",
               "denoiser_s": "denoiser training", "statistics_s": "real-data statistics",
               "finetune_s": "denoiser fine-tuning", "generate_s": "sampling",
               "refine_s": "refinement (DM)", "evaluate_s": "evaluation",
               "report_s": "report", "total_s": "total"}


def _secs(value) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "–"


def _rate(n, seconds) -> str:
    ok = isinstance(n, (int, float)) and isinstance(seconds, (int, float)) and n and seconds
    return f"{n / seconds:.1f}" if ok else "–"


def set_times(view: RunView, name: str) -> list[str]:
    """Sampling, refinement and evaluation of a set: seconds and images per second (for the
    evaluation: training images seen over all passes and rounds)."""
    meta, ev = view.sets[name].metadata, view.evals.get(name, {})
    refine, protocol = meta.get("refine") or {}, ev.get("protocol") or {}
    trained = (ev.get("num_images", 0) * protocol.get("train_passes", 0)
               * len(ev.get("accuracy", {}).get("rounds", [])))
    refine_s, eval_s = refine.get("wall_time_s"), ev.get("wall_time_s")
    return [name, _secs(meta.get("generation_wall_time_s")), _secs(meta.get("images_per_s")),
            _secs(refine_s), _rate(len(view.sets[name]), refine_s),
            _secs(eval_s), _rate(trained, eval_s)]


def times_section(view: RunView) -> Markup:
    """The stages timed in summary.json (the latest train/distill command's), with the median
    training speed from the log, then each set's times from its metadata and evaluation."""
    times = {**(view.summary.get("train_times_s") or {}), **(view.summary.get("times_s") or {})}
    stage_rows = []
    for key, seconds in times.items():
        speeds = sorted(r["images_per_s"] for r in view.records if r.get("stage") == key[:-2]
                        and isinstance(r.get("images_per_s"), (int, float)))
        stage_rows.append([STAGE_NAMES.get(key, key), _secs(seconds),
                           _secs(speeds[len(speeds) // 2]) if speeds else "–"])
    parts = [table(["stage", "seconds", "training images/s (median)"], stage_rows)
             if stage_rows else missing_box(["no stage times: summary.json is missing"])]
    if view.sets:
        parts.append(table(["set", "sampling (s)", "sampled images/s", "refinement (s)",
                            "refined images/s", "evaluation (s)", "evaluation images/s"],
                           [set_times(view, n) for n in view.finals()]))
    note = ("Evaluation images/s: training images seen per second over all passes and rounds. "
            "Stage times are the latest train/distill command's: stages found done are not "
            "timed again.")
    return Markup("".join(parts) + f"<p class=note>{esc(note)}</p>")


def config_section(view: RunView) -> Markup:
    if not view.config_text:
        return missing_box(["no config.yaml"])
    return Markup(f"<pre>{esc(view.config_text)}</pre>")

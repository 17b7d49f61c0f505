"""A run directory: everything one run made, and the rule that it is only continued with the
configuration it was started with."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from gendd.config import RunConfig
from gendd.errors import GenddError
from gendd.utils.atomic import write_text

# What a run directory may hold; `--force` clears only these, never anything else.
RUN_ENTRIES = ("config.yaml", "generator.json", "autoencoder", "denoiser", "classifier",
               "checkpoints", "cache", "metrics.jsonl", "distilled", "eval", "report",
               "summary.json", "tensorboard")


def read_config(run: Path) -> RunConfig | None:
    path = run / "config.yaml"
    if not path.is_file():
        return None
    try:
        return RunConfig.from_dict(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, TypeError, AttributeError) as e:
        raise GenddError(f"{path}: unreadable run configuration ({e})") from None


def prepare_run(run: Path, cfg: RunConfig, resume: bool = False, force: bool = False) -> bool:
    """Create `run` or check that it continues the same configuration. Returns True when an
    earlier run is being continued."""
    if run.exists() and not run.is_dir():
        raise GenddError(f"{run}: exists and is not a directory")
    existing = read_config(run) if run.is_dir() else None
    if existing is None and run.is_dir() and any(run.iterdir()) and not force:
        raise GenddError(f"{run}: directory is not empty and holds no gendd run "
                         "(choose another --out, or --force to use it anyway)")
    if existing is not None:
        if existing == cfg or resume:
            if existing != cfg:
                cfg_changes = _diff(existing.to_dict(), cfg.to_dict())
                raise GenddError(f"{run}: --resume needs the run's own configuration; "
                                 f"differs in {', '.join(cfg_changes)}")
            return True
        if not force:
            cfg_changes = _diff(existing.to_dict(), cfg.to_dict())
            raise GenddError(f"{run}: holds a run with a different configuration "
                             f"({', '.join(cfg_changes)}); use another --out, or --force to "
                             "start it over")
    if force:
        for name in RUN_ENTRIES:
            target = run / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "config.yaml", cfg.to_yaml())
    return False


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            keys.append(f"{prefix}{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return keys[:4] + (["..."] if len(keys) > 4 else [])

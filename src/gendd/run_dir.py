"""A run directory: everything one run made, the rule that it is only continued with the
configuration it was started with, and the lock that gives it one writer at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import yaml

from gendd.config import RunConfig
from gendd.errors import GenddError
from gendd.utils.atomic import write_text

# What a run directory may hold; `--force` clears only these, never anything else.
RUN_ENTRIES = ("config.yaml", "generator.json", "autoencoder", "denoiser", "classifier",
               "statistics.safetensors", "denoiser-finetuned", "checkpoints", "cache",
               "metrics.jsonl", "distilled", "eval", "report", "summary.json", "tensorboard")
LOCK = ".lock"


@contextlib.contextmanager
def lock_run(run: Path) -> Iterator[None]:
    """Hold RUN/.lock (flock) while the block runs: a second gendd process on `run` is refused at
    once, naming the first. The kernel drops a flock when its holder dies, however it dies, so
    a lock left by a killed process never blocks. The file is removed at the end (and `run`
    too if this made it and it stayed empty). Under torchrun/accelerate only rank 0 locks (the
    other ranks are the same run)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    if run.exists() and not run.is_dir():
        raise GenddError(f"{run}: exists and is not a directory")
    created = not run.exists()
    fd = _acquire(run)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}\n".encode())
        yield
    finally:
        # Removed while still held: a process that opened it meanwhile finds it gone, retries.
        with contextlib.suppress(OSError):  # gone, or another process's files appeared
            os.unlink(run / LOCK)
            if created and not any(run.iterdir()):
                run.rmdir()
        os.close(fd)


def _acquire(run: Path) -> int:
    """A descriptor of RUN/.lock, locked; retried if the file was removed in the meantime."""
    while True:
        run.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # `run` removed meanwhile by a holder that made it for nothing
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "starting"
            os.close(fd)
            raise GenddError(f"{run}: in use by another gendd process ({holder}); wait for it "
                             "to end, or choose another --out") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(run / LOCK).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


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
    earlier run is being continued.

    An unchanged configuration continues the run in `run`; `force` discards it and starts over;
    `resume` insists on continuing: with it, a missing run or a changed configuration is an
    error instead of a fresh start."""
    if resume and force:
        raise GenddError("--resume and --force contradict each other; give one of them")
    if run.exists() and not run.is_dir():
        raise GenddError(f"{run}: exists and is not a directory")
    existing = read_config(run) if run.is_dir() else None
    if force:
        for name in RUN_ENTRIES:
            target = run / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif existing is None:
        if resume:
            raise GenddError(f"{run}: no run to resume here (no config.yaml); leave out --resume "
                             "to start one")
        if run.is_dir() and any(p.name != LOCK for p in run.iterdir()):
            raise GenddError(f"{run}: directory is not empty and holds no gendd run "
                             "(choose another --out, or --force to use it anyway)")
    elif existing == cfg:
        return True
    else:
        cfg_changes = ", ".join(_diff(existing.to_dict(), cfg.to_dict()))
        if resume:
            raise GenddError(f"{run}: --resume needs the run's own configuration; "
                             f"differs in {cfg_changes}")
        raise GenddError(f"{run}: holds a run with a different configuration ({cfg_changes}); "
                         "use another --out, or --force to start it over")
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

"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

A checkpoint is a directory `step_000500/` written under a temporary name and renamed when
complete, so a kill at any moment leaves only whole checkpoints. The newest usable one wins:
one that is corrupt, or reads but holds something else (other tensors or shapes, a meta.json
that is not an object), is reported in one line and the previous one used.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gendd.errors import GenddError


def flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimiser state_dict -> (flat tensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in list(tensors.items()) + list(rest["scalars"].items()):
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(ckpt_root: Path, step: int, parts: dict[str, dict[str, torch.Tensor]],
                    meta: dict[str, Any], keep: int) -> Path:
    """Write `parts` (name -> tensor dict) and `meta` as checkpoint `step`; keep the last `keep`.
    A write that fails (a full disk) is a one-line error that leaves the earlier ones as they
    were."""
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".tmp_step_{step:08d}_{os.getpid()}"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_root.glob(".tmp_step_*"):  # a killed writer's (one writer per run)
            shutil.rmtree(stale, ignore_errors=True)
        _write(tmp, step, parts, meta)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GenddError(f"cannot write checkpoint {final} ({getattr(e, 'strerror', None) or e}); "
                         "the previous checkpoints are kept") from None
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(ckpt_root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(tmp: Path, step: int, parts: dict[str, dict[str, torch.Tensor]], meta: dict) -> None:
    tmp.mkdir()
    for name, tensors in parts.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / f"{name}.safetensors"))
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    return sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())


def read_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    try:
        meta = json.loads((path / "meta.json").read_text())
        parts = {f.stem: load_file(str(f)) for f in sorted(path.glob("*.safetensors"))}
    except (OSError, ValueError, SafetensorError) as e:
        raise GenddError(f"checkpoint {path} is corrupt or truncated ({e})") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("step"), int) and meta["step"] >= 0):
        raise GenddError(f"checkpoint {path} is not one: its meta.json is not an object with "
                         "the step")
    return parts, meta


def _check_tensors(path: Path, name: str, got, want: dict[str, torch.Tensor]) -> None:
    if not isinstance(got, dict) or set(got) != set(want):
        raise GenddError(f"checkpoint {path} holds other {name} tensors than this training's")
    for key, value in want.items():
        if got[key].shape != value.shape:
            raise GenddError(f"checkpoint {path}: {name} tensor {key} is "
                             f"{tuple(got[key].shape)}, not {tuple(value.shape)}")


def _optimizer_fits(tensors, rest, optimizer: torch.optim.Optimizer) -> bool:
    try:
        state = unflatten_optimizer_state(tensors, rest)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        sizes = [len(g["params"]) for g in state["param_groups"]]
        return (sizes == [len(g["params"]) for g in optimizer.param_groups]
                and all(0 <= i < len(params) and v.shape in (params[i].shape, ())
                        for i, per_param in state["state"].items()
                        for v in per_param.values() if torch.is_tensor(v)))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def check_fits(path: Path, parts: dict, meta: dict, modules: dict[str, torch.nn.Module],
               optimizer: torch.optim.Optimizer) -> None:
    """Refuse a checkpoint that reads but is not of these `modules` (part name -> module) and
    `optimizer`: checked before anything is loaded, so that a refused one changes nothing."""
    for name, module in modules.items():
        _check_tensors(path, name, parts.get(name), module.state_dict())
    if not _optimizer_fits(parts.get("optimizer"), meta.get("optimizer"), optimizer):
        raise GenddError(f"checkpoint {path} holds an optimiser state of other parameters")


def load_latest_checkpoint(ckpt_root: Path, check: Callable[[Path, dict, dict], None] | None = None,
                           report: Callable[[str], None] | None = None):
    """The newest usable checkpoint as (parts, meta), or None. Unreadable ones, and those that
    `check(path, parts, meta)` refuses with a GenddError, are skipped; `report` (default: a
    Python warning) gets one line naming each."""
    report = report or (lambda message: warnings.warn(message, stacklevel=3))
    for path in reversed(list_checkpoints(ckpt_root)):
        try:
            parts, meta = read_checkpoint(path)
            if check is not None:
                check(path, parts, meta)
            return parts, meta
        except GenddError as e:
            report(f"{e}; falling back to the previous checkpoint")
    return None

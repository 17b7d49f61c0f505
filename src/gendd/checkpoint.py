"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

A checkpoint is a directory `step_000500/` written under a temporary name and renamed when
complete, so a kill at any moment leaves only whole checkpoints. The newest readable one wins;
a corrupt one is reported and the previous one used.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

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
    """Write `parts` (name -> tensor dict) and `meta` as checkpoint `step`; keep the last `keep`."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:08d}"
    tmp = ckpt_root / f".tmp_step_{step:08d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, tensors in parts.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / f"{name}.safetensors"))
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(ckpt_root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


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
    return parts, meta


def load_latest_checkpoint(ckpt_root: Path):
    """The newest readable checkpoint as (parts, meta), or None. Corrupt ones are skipped with a
    warning naming them."""
    for path in reversed(list_checkpoints(ckpt_root)):
        try:
            return read_checkpoint(path)
        except GenddError as e:
            warnings.warn(f"{e}; falling back to the previous checkpoint", stacklevel=2)
    return None

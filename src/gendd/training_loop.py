"""One training loop for every network of the generator, on accelerate.

Everything random in a step (which examples, which noise) is a pure function of (seed, step):
the global batch is drawn the same way whatever the number of processes, and each process
takes its slice. Resuming therefore needs no RNG state and no data-loader position, and two
processes compute the same update as one with the same global batch.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from gendd.checkpoint import (check_fits, flatten_optimizer_state, load_latest_checkpoint,
                              save_checkpoint, unflatten_optimizer_state)
from gendd.data.base import warn
from gendd.errors import GenddError
from gendd.runtime import derived_seed
from gendd.tracking import tracker_scalars


def warmup_cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up to `base_lr`, then cosine decay to 10% of it."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def ema_decay_at(max_decay: float, updates: int) -> float:
    """EMA decay after `updates` updates: (1 + n) / (10 + n), capped at `max_decay`.

    A fixed decay of 0.999 over a 1,500-step run would leave 22% of the weight on the random
    initialisation; the warm-up lets short runs average only their recent weights."""
    return min(max_decay, (1.0 + updates) / (10.0 + updates))


def _ema_multi_avg_fn(max_decay: float):
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor):
        torch._foreach_lerp_(averaged, current, 1.0 - ema_decay_at(max_decay, int(updates)))
    return update


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, step * 7919, salt) % (2 ** 63))


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> torch.Tensor:
    """Example indices of global batch `step`: consecutive slices of a fresh permutation per
    epoch (so every example is seen once per epoch)."""
    positions = step * batch_size + torch.arange(batch_size)
    epochs, offsets = positions // num_examples, positions % num_examples
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        perm = torch.randperm(num_examples, generator=step_generator(seed, epoch, salt=17))
        mask = epochs == epoch
        out[mask] = perm[offsets[mask]]
    return out


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "no"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "no"


@dataclass
class LoopSpec:
    name: str  # stage name in logs and checkpoint folders
    total_steps: int
    batch_size: int  # global: the same meaning at any number of processes
    lr: float
    warmup_steps: int
    grad_clip: float = 1.0
    ema_decay: float | None = None
    weight_decay: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    on_log_every: int = 0  # steps between calls of train_loop's `on_log` (0: never)


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step (appended; the last line of a step wins),
    also sent to the accelerator's trackers (TensorBoard) when it has any."""

    def __init__(self, path: Path, enabled: bool = True, accelerator: Accelerator | None = None):
        self.path, self.enabled, self.accelerator = path, enabled, accelerator

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            self.accelerator.log(tracker_scalars(record), step=record["step"])


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and stops at the end of the step."""

    def __init__(self):
        self.raised = False

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _restore(ckpt_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             ema: AveragedModel | None) -> int:
    """Load the newest checkpoint that fits these objects into them; the step to go on from."""
    modules = {"model": model, **({"ema": ema} if ema is not None else {})}
    state = load_latest_checkpoint(
        ckpt_dir, lambda path, parts, meta: check_fits(path, parts, meta, modules, optimizer),
        report=warn)
    if state is None:
        return 0
    parts, meta = state
    model.load_state_dict(parts["model"])
    optimizer.load_state_dict(unflatten_optimizer_state(parts["optimizer"], meta["optimizer"]))
    if ema is not None:
        ema.load_state_dict(parts["ema"])
    return meta["step"]


def train_loop(accelerator: Accelerator, model: torch.nn.Module, spec: LoopSpec, seed: int,
               num_examples: int, draw: Callable[[torch.Generator, int], dict],
               loss_fn: Callable[[torch.nn.Module, torch.Tensor, dict], torch.Tensor],
               ckpt_dir: Path, metrics: MetricsLog,
               on_log: Callable[[int, torch.nn.Module], dict] | None = None,
               progress: bool = True):
    """Train `model` for `spec.total_steps` global steps, resuming from `ckpt_dir`.

    `draw(generator, n)` returns the step's randomness for the whole global batch (tensors with
    n rows); `loss_fn(model, indices, randomness)` the mean loss over this process's slice;
    `on_log(step, model)` (every `spec.on_log_every` steps, on the EMA model where there is one)
    more metrics. Returns the trained model (unwrapped) and its EMA (or None).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    ema = (AveragedModel(model, multi_avg_fn=_ema_multi_avg_fn(spec.ema_decay),
                         use_buffers=True)
           if spec.ema_decay else None)
    start = _restore(ckpt_dir, model, optimizer, ema)
    model, optimizer = accelerator.prepare(model, optimizer)
    if ema is not None:
        ema.to(accelerator.device)
    step_fn = _step_function(accelerator, model, optimizer, spec, loss_fn)
    bar = tqdm(total=spec.total_steps, initial=start, desc=spec.name, unit="step",
               disable=not (progress and accelerator.is_local_main_process), dynamic_ncols=True)
    model.train()
    t_last, examples_since = time.perf_counter(), 0
    with _StopFlag() as stop, bar:
        for step in range(start, spec.total_steps):
            lr = warmup_cosine_lr(step, spec.total_steps, spec.lr, spec.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, grad_norm = step_fn(batch_indices(seed, step, num_examples, spec.batch_size),
                                      draw(step_generator(seed, step), spec.batch_size))
            if ema is not None:
                ema.update_parameters(accelerator.unwrap_model(model))
            examples_since += spec.batch_size
            bar.update(1)
            done = step + 1
            if done % spec.log_every == 0 or done == spec.total_steps:
                now = time.perf_counter()
                record = {"stage": spec.name, "step": done, "lr": lr,
                          "loss": accelerator.reduce(loss, "mean").item(),
                          "grad_norm": float(grad_norm),
                          "images_per_s": examples_since / (now - t_last)}
                t_last, examples_since = now, 0
                if on_log is not None and spec.on_log_every and (
                        done % spec.on_log_every == 0 or done == spec.total_steps):
                    record.update(on_log(done, ema.module if ema is not None
                                         else accelerator.unwrap_model(model)))
                    model.train()
                    t_last = time.perf_counter()
                metrics.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if done % spec.checkpoint_every == 0 or done == spec.total_steps or stop.raised:
                _checkpoint(accelerator, model, optimizer, ema, ckpt_dir, spec, done)
            if stop.raised:
                raise KeyboardInterrupt
    return accelerator.unwrap_model(model), (ema.module if ema is not None else None)


def _step_function(accelerator: Accelerator, model, optimizer, spec: LoopSpec, loss_fn):
    """(indices, randomness) of a global batch -> (this process's mean loss, grad norm): one
    optimiser step on this process's slice, in `gradient_accumulation_steps` micro-batches."""
    world, rank = accelerator.num_processes, accelerator.process_index
    accum = accelerator.gradient_accumulation_steps
    if spec.batch_size % (world * accum):
        raise GenddError(f"{spec.name}: batch size {spec.batch_size} is not divisible by "
                         f"{world} processes x {accum} accumulation steps")
    micro = spec.batch_size // (world * accum)

    def step(indices, randomness):
        losses, grad_norm = [], 0.0
        for a in range(accum):
            part = slice((rank * accum + a) * micro, (rank * accum + a + 1) * micro)
            with accelerator.accumulate(model):
                loss = loss_fn(model, indices[part], {k: v[part] for k, v in randomness.items()})
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), spec.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        return torch.stack(losses).mean(), grad_norm

    return step


def _checkpoint(accelerator: Accelerator, model, optimizer, ema, ckpt_dir: Path,
                spec: LoopSpec, step: int) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tensors, rest = flatten_optimizer_state(optimizer.state_dict())
        parts = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": tensors}
        if ema is not None:
            parts["ema"] = ema.state_dict()
        save_checkpoint(ckpt_dir, step, parts, {"stage": spec.name, "optimizer": rest},
                        spec.keep_checkpoints)
    accelerator.wait_for_everyone()

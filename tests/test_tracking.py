"""TensorBoard through accelerate's trackers: the same numbers as metrics.jsonl."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from accelerate.utils import is_tensorboard_available

from gendd.config import resolve_config
from gendd.errors import GenddError
from gendd.tracking import tracker_options, tracker_scalars


def read_scalars(folder) -> dict[tuple[str, int], float]:
    """(tag, step) -> value from every TensorBoard event file under `folder` (TFRecord framing:
    length, its CRC, an Event message, its CRC)."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        from tensorboardX.proto.event_pb2 import Event
    out = {}
    for path in folder.rglob("events.out.tfevents*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out[(v.tag, event.step)] = v.simple_value
    return out


@pytest.mark.skipif(not is_tensorboard_available(), reason="neither tensorboard nor tensorboardX")
def test_a_training_run_with_the_tracker_writes_metrics_jsonl_numbers_to_tensorboard(tmp_path):
    from gendd.train import make_accelerator
    from gendd.training_loop import LoopSpec, MetricsLog, train_loop

    cfg = resolve_config("fashion-mnist", "tiny", overrides={"train.tracker": "tensorboard"})
    accelerator = make_accelerator(cfg, tmp_path)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])

    def loss_fn(model, idx, rnd):
        return (model(x[idx]).squeeze(1) - y[idx]).pow(2).mean()

    try:
        spec = LoopSpec("toy", 10, 8, 0.05, 2, checkpoint_every=100, keep_checkpoints=1,
                        log_every=5, on_log_every=5)
        train_loop(accelerator, torch.nn.Linear(3, 1), spec, 0, 64, lambda gen, n: {}, loss_fn,
                   tmp_path / "ckpt", MetricsLog(tmp_path / "metrics.jsonl", accelerator=accelerator),
                   on_log=lambda step, model: {"fd_classifier": 10.0 / step}, progress=False)
    finally:
        accelerator.end_training()

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10]
    events = read_scalars(tmp_path / "tensorboard")
    for r in records:
        for key in ("loss", "lr", "grad_norm", "images_per_s", "fd_classifier"):
            assert events[(f"toy/{key}", r["step"])] == pytest.approx(r[key], rel=1e-6)


def test_no_tracker_by_default_and_unknown_ones_refused(tmp_path):
    assert resolve_config("fashion-mnist").train.tracker == "none"
    assert tracker_options("none", tmp_path) == {}
    with pytest.raises(GenddError, match="unknown train.tracker 'wandb'"):
        tracker_options("wandb", tmp_path)


def test_missing_tensorboard_says_in_one_line_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("gendd.tracking.is_tensorboard_available", lambda: False)
    with pytest.raises(GenddError) as e:
        tracker_options("tensorboard", tmp_path)
    assert "pip install 'gendd[tensorboard]'" in str(e.value) and "\n" not in str(e.value)


def test_scalars_are_named_by_stage_and_only_numbers_are_kept():
    record = {"stage": "denoiser", "step": 20, "loss": 0.5, "images_per_s": 100,
              "fid_inception": 12.5, "note": "text", "flag": True}
    assert tracker_scalars(record) == {"denoiser/loss": 0.5, "denoiser/images_per_s": 100.0,
                                       "denoiser/fid_inception": 12.5}

"""Optional experiment trackers (TensorBoard), through accelerate's tracker API.

metrics.jsonl stays the record of a run; a tracker shows the same numbers. Every numeric field
of a record is logged as `STAGE/FIELD` at the record's step, since each stage (autoencoder,
denoiser) counts its steps from zero.
"""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import is_tensorboard_available

from gendd.errors import GenddError

TRACKERS = ("none", "tensorboard")
LOG_DIR = "tensorboard"  # under the run directory


def tracker_options(tracker: str, run: Path) -> dict:
    """Accelerator keyword arguments for `tracker`, which writes under `run`. Checked before any
    training, so that a missing package fails in one line and not hours later."""
    if tracker not in TRACKERS:
        raise GenddError(f"unknown train.tracker '{tracker}' (known: {', '.join(TRACKERS)})")
    if tracker == "none":
        return {}
    if not is_tensorboard_available():  # accelerate writes with tensorboard or tensorboardX
        raise GenddError("train.tracker=tensorboard needs TensorBoard: "
                         "pip install 'gendd[tensorboard]'")
    return {"log_with": tracker, "project_dir": str(run)}


def start_trackers(accelerator: Accelerator) -> None:
    if accelerator.log_with:
        accelerator.init_trackers(LOG_DIR)  # accelerate writes to project_dir / LOG_DIR


def tracker_scalars(record: dict) -> dict[str, float]:
    """The numbers of a metrics.jsonl record, named `STAGE/FIELD`."""
    stage = record.get("stage", "run")
    return {f"{stage}/{k}": float(v) for k, v in record.items()
            if k not in ("stage", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}

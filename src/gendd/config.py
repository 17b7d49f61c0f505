"""Run configuration: one dataclass tree, presets as data, YAML on disk.

A preset gives every size and step count; any field can be overridden with a dotted key
(`denoiser.steps=2000`). The resolved configuration is written to `RUN/config.yaml` and a run
directory is only ever continued with the same configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from gendd.errors import GenddError


@dataclass
class AutoencoderConfig:
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    layers_per_block: int = 1
    norm_num_groups: int = 8
    kl_weight: float = 1e-4  # strong enough that the decoder sees (and tolerates) latent noise
    steps: int = 700
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50


@dataclass
class DenoiserConfig:
    block_out_channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 32
    norm_num_groups: int = 32
    prediction_type: str = "v_prediction"
    beta_schedule: str = "squaredcos_cap_v2"
    label_dropout: float = 0.1  # probability of the null class, for classifier-free guidance
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999  # reached only after a warm-up (training_loop.ema_decay_at)
    grad_clip: float = 1.0


@dataclass
class SamplerConfig:
    solver: str = "dpm++"  # dpm++ | unipc | ddim | ddpm
    steps: int = 20
    guidance: float = 2.0
    batch_size: int = 500
    # Start from noise; or from k-means centres of each class's real training latents noised
    # to `strength` (1.0 = pure noise) and denoised from there ("prototypes"); or sample
    # `candidates` times as many images from noise and keep those that herding picks against
    # the run's stored real-data statistics ("herding", no data read).
    init: str = "prototypes"
    strength: float = 0.5
    candidates: int = 4
    # The denoiser sampled: "base" (trained on the data) or "finetuned" (then fine-tuned so
    # that its samples match the run's stored statistics, `gendd.finetune`)
    denoiser: str = "base"


@dataclass
class RefineConfig:
    """Refinement of a sampled set by Distribution Matching started from it (`gendd.refine`).
    `lr`, `sigma_lr`, `stored_lr` and `regression` are given at `reference_ipc` images per class
    and scaled with the IPC (`refine.settings_at`; 0 = used as given)."""
    # none | dm: against the real training set | stored: against the run's stored statistics
    # of it (DM's mean and regression terms; `gendd.real_statistics`), reading no data
    method: str = "dm"
    iterations: int = 300
    batch_real: int = 256  # real images per class per iteration (DM's value)
    lr: float = 1.0  # the images' SGD learning rate, times ipc / reference_ipc
    # the same against stored statistics: their sigma points (mean and regression terms), and,
    # stored without spread, DM's mean term alone (smaller gradients)
    sigma_lr: float = 1.0
    stored_lr: float = 4.0
    reference_ipc: int = 10
    lr_schedule: str = "cosine"  # constant (DM's) | cosine: annealed to 0 over the iterations
    augmentation: str = "shared"  # per-class (DM's) | shared: one DSA draw for all classes
    range_projection: str = "at-end"  # at-end (DM's) | every-step: clamp to [0, 1] each step
    feature_blocks: str = "last"  # last (DM's) | all: every ConvNet block's pooled features
    mmd: float = 250.0  # weight of the Gaussian-kernel MMD term
    discrimination: float = 0.0  # weight of the centre discrimination term
    regression: float = 40.0  # weight of the kernel regression term, times reference_ipc / ipc
    # against stored statistics: the top directions of each class's stored spread used (at most
    # train.statistics_components)
    stored_components: int = 8
    # IPC threshold -> settings that replace the ones above from that many images per class
    # up, to the next threshold (the largest threshold <= IPC applies). Each rule's
    # measurements: docs/ABLATIONS.md, rows R1 (one image per class) and R50 (50 and more).
    per_ipc: dict = field(default_factory=lambda: {
        1: {"iterations": 200, "range_projection": "every-step", "mmd": 0.0,
            "discrimination": 300.0},
        2: {},
        50: {"iterations": 1000, "range_projection": "every-step", "feature_blocks": "all",
             "stored_components": 32, "sigma_lr": 4.0},
    })


@dataclass
class TrainConfig:
    mixed_precision: str = "auto"  # auto: bf16 where the hardware has it, else no
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    fd_every: int = 500  # Frechet distance on a fixed sample set (the paper's figure: 1000)
    fd_samples: int = 500
    classifier_epochs: int = 1  # the real-data classifier behind fd_classifier
    # DM iterations' real-data statistics kept in the run for `refine.method` stored (0: none)
    statistics_draws: int = 100
    # principal directions of each class's real embeddings kept per draw (their spread; 0: none)
    statistics_components: int = 32
    # The denoiser fine-tuned after the statistics (`gendd.finetune`; 0 iterations: not): each
    # iteration samples `finetune_ipc` images per class from noise with the run's sampler,
    # gradients through its last `finetune_grad_steps` steps and the decoder, and lowers the
    # stored refinement's loss against one stored draw, by Adam at `finetune_lr`
    finetune_iterations: int = 100
    finetune_lr: float = 1e-4
    finetune_grad_steps: int = 2
    finetune_ipc: int = 10
    grad_accumulation: int = 1
    tracker: str = "none"  # none | tensorboard: metrics.jsonl's numbers also in RUN/tensorboard
    # pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth, or the same tensors
    # as safetensors): when given, `fid_inception` is logged beside fd_classifier. Never downloaded.
    inception_weights: str = ""


@dataclass
class EvalConfig:
    epochs: int = 1000
    rounds: int = 1
    model: str = "convnet"


@dataclass
class RunConfig:
    dataset: str = "fashion-mnist"
    preset: str = "quick"
    seed: int = 0
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return _build(cls, data, "")


# Presets: overrides of the defaults above, as data.
PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a 2-core CPU.
    "quick": {},
    # One modern GPU; CIFAR-100 / Tiny-ImageNet sized (hours).
    "full": {
        "autoencoder": {"block_out_channels": (64, 128, 256), "layers_per_block": 2,
                        "norm_num_groups": 32, "steps": 40_000, "batch_size": 256, "lr": 1e-3},
        "denoiser": {"block_out_channels": (128, 256, 384), "layers_per_block": 2,
                     "attention_head_dim": 64, "steps": 200_000, "batch_size": 512,
                     "lr": 2e-4, "warmup_steps": 2000, "ema_decay": 0.9999},
        "sampler": {"batch_size": 2000},
        "train": {"checkpoint_every": 5000, "keep_checkpoints": 3, "log_every": 100,
                  "fd_every": 1000, "fd_samples": 2000, "classifier_epochs": 5},
        "eval": {"rounds": 3},
    },
    # Seconds: the test suite's end-to-end smoke run.
    "tiny": {
        "autoencoder": {"block_out_channels": (8, 16), "norm_num_groups": 8, "steps": 30,
                        "batch_size": 32, "warmup_steps": 5},
        "denoiser": {"block_out_channels": (16, 32), "attention_head_dim": 8,
                     "norm_num_groups": 8, "steps": 30,
                     "batch_size": 32, "warmup_steps": 5},
        "sampler": {"steps": 4, "batch_size": 64},
        "refine": {"iterations": 2, "batch_real": 8},
        "train": {"checkpoint_every": 10, "log_every": 5, "fd_every": 20, "fd_samples": 50,
                  "classifier_epochs": 1, "statistics_draws": 3, "finetune_iterations": 2,
                  "finetune_ipc": 2},
        "eval": {"epochs": 5, "rounds": 1},
    },
}


# The values each choice setting takes (the CLI's choices come from here too).
CHOICES: dict[str, tuple[str, ...]] = {
    "sampler.solver": ("dpm++", "unipc", "ddim", "ddpm"),
    "sampler.init": ("noise", "prototypes", "herding"),
    "sampler.denoiser": ("base", "finetuned"),
    "refine.method": ("none", "dm", "stored"),
    "refine.lr_schedule": ("constant", "cosine"),
    "refine.augmentation": ("per-class", "shared"),
    "refine.range_projection": ("at-end", "every-step"),
    "refine.feature_blocks": ("last", "all"),
    "train.mixed_precision": ("auto", "no", "fp16", "bf16"),
}
# Numbers are finite and >= 0; these are also >= 1 (counts and sizes) ...
AT_LEAST_ONE = {
    "autoencoder.latent_channels", "autoencoder.layers_per_block", "autoencoder.norm_num_groups",
    "autoencoder.steps", "autoencoder.batch_size", "denoiser.layers_per_block",
    "denoiser.attention_head_dim", "denoiser.norm_num_groups", "denoiser.steps",
    "denoiser.batch_size", "sampler.steps", "sampler.batch_size", "sampler.candidates",
    "refine.batch_real", "refine.stored_components",
    "train.checkpoint_every", "train.keep_checkpoints", "train.log_every", "train.fd_samples",
    "train.classifier_epochs", "train.grad_accumulation", "train.finetune_grad_steps",
    "train.finetune_ipc", "eval.rounds"}
# ... these > 0 ...
POSITIVE = {"autoencoder.lr", "denoiser.lr", "refine.lr", "refine.sigma_lr", "refine.stored_lr",
            "sampler.strength", "train.finetune_lr"}
# ... and these <= 1 (fractions).
AT_MOST_ONE = {"denoiser.label_dropout", "denoiser.ema_decay", "sampler.strength"}


def resolve_config(dataset: str, preset: str = "quick", seed: int = 0,
                   overrides: dict[str, Any] | None = None) -> RunConfig:
    """The configuration of a new run: defaults, then the preset, then `overrides`
    ({"section.key": value})."""
    if preset not in PRESETS:
        raise GenddError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    data = RunConfig(dataset=dataset, preset=preset, seed=seed).to_dict()
    _hold_at_every_ipc(data, PRESETS[preset].get("refine", {}))
    _merge(data, copy.deepcopy(PRESETS[preset]))
    return with_overrides(RunConfig.from_dict(data), overrides or {})


def with_overrides(cfg: RunConfig, overrides: dict[str, Any],
                   sections: tuple[str, ...] | None = None) -> RunConfig:
    """`cfg` with {"section.key": value} overrides applied and checked; `sections` limits
    which sections may be overridden. A `refine` setting given this way holds at every IPC:
    it is removed from the `refine.per_ipc` rules."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        section = key.split(".")[0]
        if key.count(".") != 1:
            own = key in data and not isinstance(data[key], dict)
            raise GenddError(f"--set takes section.key (e.g. denoiser.steps=2000), not '{key}'"
                             + (f"; use --{key}" if own else ""))
        if sections is not None and section not in sections:
            raise GenddError(f"--set {key}: only {', '.join(s + '.*' for s in sections)} "
                             "can be set here")
        _set_dotted(data, key, value)
    _hold_at_every_ipc(data, {k.split(".")[1]: v for k, v in overrides.items()
                              if k.startswith("refine.")})
    cfg = RunConfig.from_dict(data)
    check_config(cfg)
    return cfg


def _hold_at_every_ipc(data: dict, refine_settings: dict) -> None:
    if "per_ipc" in refine_settings:
        return  # a table given whole is taken as it is
    for rule in data["refine"]["per_ipc"].values():
        for key in refine_settings:
            rule.pop(key, None)


def check_config(cfg: RunConfig) -> None:
    """Fail at once, before any training, on a value that would only fail later: names,
    ranges, and every `refine.per_ipc` rule."""
    from gendd.models.zoo import check_model

    data = cfg.to_dict()
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                _check_value(f"{section}.{key}", value)
    check_model(cfg.eval.model)
    rules = cfg.refine.per_ipc
    if not isinstance(rules, dict) or not all(isinstance(t, int) and not isinstance(t, bool)
                                              and t >= 1 for t in rules):
        raise GenddError("refine.per_ipc must map IPC thresholds (whole numbers >= 1) to settings")
    for threshold, rule in rules.items():
        if not isinstance(rule, dict) or {"per_ipc", "method"} & set(rule):
            raise GenddError(f"refine.per_ipc[{threshold}] must map refine settings to values")
        base = {k: v for k, v in data["refine"].items() if k != "per_ipc"}
        built = _build(RefineConfig, {**base, **rule}, f"refine.per_ipc[{threshold}].")
        for key in rule:
            _check_value(f"refine.{key}", getattr(built, key))


def _check_value(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise GenddError(f"unknown {key} '{value}' ({' | '.join(CHOICES[key])})")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise GenddError(f"{key} must be a finite number (got {value})")
    low = 1 if key in AT_LEAST_ONE else 0
    if value < low or (key in POSITIVE and value <= 0) or (key in AT_MOST_ONE and value > 1):
        bound = (f"in {'(0' if key in POSITIVE else '[0'}, 1]" if key in AT_MOST_ONE
                 else "> 0" if key in POSITIVE else f">= {low}")
        raise GenddError(f"{key} must be {bound} (got {value})")


def parse_override(text: str) -> tuple[str, Any]:
    """'denoiser.steps=2000' -> ('denoiser.steps', 2000), the value parsed as YAML."""
    if "=" not in text:
        raise GenddError(f"override '{text}' is not of the form key=value (e.g. denoiser.steps=2000)")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise GenddError(f"--set {text}: the value is not valid YAML") from None
    if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
        parsed = value.strip()  # YAML 1.1 reads no/yes/on/off as booleans; keep the word
    return key.strip(), parsed


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "per_ipc":
            _merge(base[k], v)
        else:
            base[k] = v


def _set_dotted(data: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise GenddError(f"unknown configuration key '{key}'")
        node = node[p]
    if leaf not in node or (isinstance(node[leaf], dict) and leaf != "per_ipc"):
        raise GenddError(f"unknown configuration key '{key}'")
    node[leaf] = value


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _typed(value: Any, default: Any, name: str) -> Any:
    """`value` as the type of the field's `default`, or a one-line error naming `name`."""
    if isinstance(default, bool) or isinstance(default, dict) or default is None:
        return value
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind, value = "a number", float(value) if ok else value
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a word"
    else:  # a tuple of ints (channel widths)
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        kind, value = "a list of whole numbers >= 1", tuple(value) if ok else value
    if not ok:
        raise GenddError(f"{name} must be {kind} (got {value!r})")
    return value


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise GenddError(f"{where.rstrip('.') or 'the configuration'} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise GenddError(f"unknown configuration key(s) {', '.join(where + k for k in sorted(unknown))}")
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            continue
        value = data[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value or {}, f"{where}{name}.")
        else:
            value = _typed(value, default, where + name)
        kwargs[name] = value
    return cls(**kwargs)

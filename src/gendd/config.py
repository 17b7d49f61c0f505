"""Run configuration: one dataclass tree, presets as data, YAML on disk.

A preset gives every size and step count; any field can be overridden with a dotted key
(`denoiser.steps=2000`). The resolved configuration is written to `RUN/config.yaml` and a run
directory is only ever continued with the same configuration.
"""

from __future__ import annotations

import copy
import dataclasses
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
    # Over-generate `oversample` x IPC candidates per class and keep IPC of them, chosen by the
    # real-data classifier ("confident-kcenter"), or keep the first IPC ("none").
    oversample: int = 1
    select: str = "none"
    # Start from noise, or from k-means centres of each class's real training latents noised
    # to `strength` (1.0 = pure noise) and denoised from there ("prototypes").
    init: str = "prototypes"
    strength: float = 0.5


# The schedules of DM's image learning rate (`baselines.distribution_matching`).
LR_SCHEDULES = ("constant", "cosine")
# How DM draws its DSA transformations: one per class (DM's) or one for all classes.
AUGMENTATION_DRAWS = ("per-class", "shared")
# The ConvNet blocks whose outputs DM refinement embeds with: the last one (DM's) or all of them.
FEATURE_BLOCKS = ("last", "all")
# When DM refinement projects its images onto the valid pixel range [0, 1]: only at the end, when
# the set file is written (DM's), or after every optimiser step, so that the images it
# optimises are the ones it writes.
RANGE_PROJECTIONS = ("at-end", "every-step")


@dataclass
class RefineConfig:
    """After sampling, optionally refine the set by Distribution Matching started from it
    (`baselines.distribution_matching` with the sampled images as its initialisation)."""
    method: str = "dm"  # none | dm
    # DM iterations from 2 to 49 images per class, at one, and from 50 up
    # (`pipeline.applied_refinement`). With the cosine schedule and the shared draw, 300 gain
    # 0.30 points over 200 at IPC 10 on Fashion-MNIST (3 paired rounds, 86.14 %) and lose 0.78
    # at IPC 1 (3); under the constant rate 400 had lost 0.28 at IPC 10. At IPC 50, beside
    # every block's features and the range kept at every step, 500 gain 0.18 over 300 and
    # 1000 another 0.13 over 500 (3 paired rounds each, 89.06 %; docs/BENCHMARKS.md, Issue 7).
    iterations: int = 300
    iterations_ipc1: int = 200
    iterations_ipc50: int = 1000
    batch_real: int = 256  # real images per class per iteration (DM's value)
    # DM's image learning rate at 10 images per class (DM's 1.0 there), scaled by IPC / 10 so
    # that each image takes the same step at every IPC (`pipeline.applied_lr`).
    lr: float = 1.0
    # "cosine" anneals that rate to 0 over the iterations, "constant" keeps it (DM's):
    # +0.26 points at IPC 10 on Fashion-MNIST (3 paired rounds), -0.19 at IPC 1 and +0.10 at
    # IPC 50 (within noise; docs/BENCHMARKS.md, Issue 7).
    lr_schedule: str = "cosine"
    # "shared": each DM iteration transforms every class's images by one DSA draw, instead of
    # one draw per class ("per-class", DM's), under which the regression term tells the classes
    # apart by their transformations. With the regression weight cut to 40 (its gradient is
    # 2.0-2.3 times as large then): +0.33 points at IPC 10 (3 paired rounds) and +1.2 at
    # IPC 1 (6) on Fashion-MNIST, +0.24 at IPC 50 (1 paired round; docs/BENCHMARKS.md, Issue 7).
    augmentation: str = "shared"
    # When DM's images are clamped onto the valid pixel range, from 2 to 49 images per class, at
    # one and from 50 up (`pipeline.applied_refinement`): "at-end" (DM's) leaves them free and
    # the set file clamps them (62 % of the pixels at IPC 1, 29 % at IPC 50 on Fashion-MNIST);
    # "every-step" clamps them after every step, so that the images DM optimises are the ones
    # the file holds. On Fashion-MNIST every step gains 2.65 points at IPC 1 (3 paired rounds),
    # 0.11 at IPC 50 (2; 0.43 beside every block's features) and loses 0.09 at IPC 10 (2)
    # (docs/BENCHMARKS.md, Issue 7).
    range_projection: str = "at-end"
    range_projection_ipc1: str = "every-step"
    range_projection_ipc50: str = "every-step"
    # The ConvNet blocks DM embeds with (`matching_losses.all_block_features`) below 50 images
    # per class and from 50 up (`pipeline.applied_refinement`): "last" (DM's) or "all", every
    # block's outputs pooled to the last one's size and put side by side, for the mean, MMD and
    # regression terms. On Fashion-MNIST "all" gained 0.13 points at IPC 50 (2 paired rounds),
    # 0.43 there beside the every-step range projection (2), and lost 0.36 at IPC 10 (2) and
    # 0.54 at IPC 1 (3), at 1.4 times the DM time (docs/BENCHMARKS.md, Issue 7).
    feature_blocks: str = "last"
    feature_blocks_ipc50: str = "all"
    # Weight of a Gaussian-kernel MMD term added to DM's mean matching (0 = plain DM; see
    # `matching_losses.gaussian_mmd_gap`). 250 gives it about the gradient norm of the mean term;
    # +0.4 points at IPC 10 on Fashion-MNIST (docs/BENCHMARKS.md, Issue 7). Applied from 2
    # images per class up (`pipeline.applied_refinement`).
    mmd: float = 250.0
    # Weight of the centre discrimination term (`matching_losses.centre_discrimination`: the
    # synthetic class centres must classify the real embeddings; 0 = off). Applied at one
    # image per class only (`pipeline.applied_refinement`): +1.1 points at
    # IPC 1 on Fashion-MNIST, none at IPC 10 (docs/BENCHMARKS.md, Issue 7).
    discrimination: float = 300.0
    # Weight of the kernel regression term (`matching_losses.kernel_regression_loss`: a ridge
    # regression on the synthetic embeddings must predict the real images' labels; 0 = off).
    # The weight at 10 images per class, applied at every IPC scaled by 10 / IPC
    # (`pipeline.applied_refinement`, which gives what it measured at IPC 1 and 50): +0.95 points
    # at IPC 10 on Fashion-MNIST at 100 with per-class augmentation; 40 with the shared one
    # (docs/BENCHMARKS.md, Issue 7).
    regression: float = 40.0
    # IDM's model sampling (`baselines.distribution_matching`): `trained_nets` networks trained
    # on real images for `trained_steps` steps, snapshots every `snapshot_every`, used by a
    # `trained_share` of the iterations instead of a random network, with the class term
    # weighted by `ce`. 0 trained networks = DM's random networks only.
    trained_nets: int = 0
    trained_steps: int = 100
    snapshot_every: int = 10
    trained_share: float = 0.5
    ce: float = 0.0


@dataclass
class TrainConfig:
    mixed_precision: str = "auto"  # auto: bf16 where the hardware has it, else no
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    fd_every: int = 500  # Frechet distance on a fixed sample set (the paper's figure: 1000)
    fd_samples: int = 500
    classifier_epochs: int = 1  # the real-data classifier behind fd_classifier and selection
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
        "refine": {"iterations": 2, "iterations_ipc1": 2, "iterations_ipc50": 2, "batch_real": 8},
        "train": {"checkpoint_every": 10, "log_every": 5, "fd_every": 20, "fd_samples": 50,
                  "classifier_epochs": 1},
        "eval": {"epochs": 5, "rounds": 1},
    },
}


def resolve_config(dataset: str, preset: str = "quick", seed: int = 0,
                   overrides: dict[str, Any] | None = None) -> RunConfig:
    if preset not in PRESETS:
        raise GenddError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    data = RunConfig(dataset=dataset, preset=preset, seed=seed).to_dict()
    _merge(data, copy.deepcopy(PRESETS[preset]))
    for key, value in (overrides or {}).items():
        if key.count(".") != 1:
            own = key in data and not isinstance(data[key], dict)
            raise GenddError(f"--set takes section.key (e.g. denoiser.steps=2000), not '{key}'"
                             + (f"; use --{key}" if own else ""))
        _set_dotted(data, key, value)
    cfg = RunConfig.from_dict(data)
    check_names(cfg)
    return cfg


def check_names(cfg: RunConfig) -> None:
    """Fail at once, before any training, on a solver, sampling option or evaluation network
    that would only be looked up after it."""
    from gendd.diffusion import check_solver
    from gendd.generate import check_sampler
    from gendd.models.zoo import check_model

    check_solver(cfg.sampler.solver)
    check_sampler(cfg.sampler)
    check_model(cfg.eval.model)
    check_refine(cfg.refine)


# The per-IPC variants a `RefineConfig` setting NAME may have beside it: NAME_ipc1 at one image
# per class, NAME_ipc50 from 50 up (`pipeline.applied_refinement` picks among them).
TIER_SUFFIXES = ("_ipc1", "_ipc50")


def tier_fields(name: str) -> tuple[str, ...]:
    """The `RefineConfig` setting `name` and those of its per-IPC variants that exist."""
    fields = {f.name for f in dataclasses.fields(RefineConfig)}
    return (name, *(name + suffix for suffix in TIER_SUFFIXES if name + suffix in fields))


def check_refine(refine: RefineConfig) -> None:
    if refine.method not in ("none", "dm"):
        raise GenddError(f"unknown refinement '{refine.method}' (none | dm)")
    if min(*(getattr(refine, key) for key in tier_fields("iterations")), refine.mmd,
           refine.discrimination, refine.regression) < 0 or refine.batch_real < 1 \
            or not refine.lr > 0:
        raise GenddError("refine.iterations, refine.iterations_ipc1, refine.iterations_ipc50, "
                         "refine.mmd, refine.discrimination and refine.regression must be >= 0, "
                         "refine.batch_real >= 1 and refine.lr > 0")
    for name, choices in (("lr_schedule", LR_SCHEDULES), ("augmentation", AUGMENTATION_DRAWS),
                          ("range_projection", RANGE_PROJECTIONS),
                          ("feature_blocks", FEATURE_BLOCKS)):
        for key in tier_fields(name):
            if getattr(refine, key) not in choices:
                raise GenddError(f"unknown refine.{key} '{getattr(refine, key)}' "
                                 f"({' | '.join(choices)})")
    if refine.trained_nets < 0 or refine.ce < 0 or not 0 <= refine.trained_share <= 1 \
            or not 1 <= refine.snapshot_every <= refine.trained_steps:
        raise GenddError("refine.trained_nets and refine.ce must be >= 0, refine.trained_share "
                         "in [0, 1] and 1 <= refine.snapshot_every <= refine.trained_steps")


def parse_override(text: str) -> tuple[str, Any]:
    """'denoiser.steps=2000' -> ('denoiser.steps', 2000), the value parsed as YAML."""
    if "=" not in text:
        raise GenddError(f"override '{text}' is not of the form key=value (e.g. denoiser.steps=2000)")
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value)
    if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
        parsed = value.strip()  # YAML 1.1 reads no/yes/on/off as booleans; keep the word
    return key.strip(), parsed


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
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
    if leaf not in node or isinstance(node[leaf], dict):
        raise GenddError(f"unknown configuration key '{key}'")
    node[leaf] = value


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _build(cls, data: dict[str, Any], where: str):
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
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)

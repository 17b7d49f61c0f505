"""The stages of a run, each resumable, and `distill` which chains them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from gendd.config import RefineConfig, RunConfig, tier_fields
from gendd.data import ImageDataset
from gendd.latent_model import LatentModel
from gendd.utils.atomic import write_json


def train_run(run: Path, cfg: RunConfig, dataset: ImageDataset, progress: bool = True,
              cpu: bool = False) -> tuple[LatentModel, dict]:
    """Autoencoder, real-data classifier, then denoiser; finished stages are loaded, not redone.
    Returns the model and the wall time of each stage run now."""
    from gendd.features import FDTracker, InceptionFeatures, load_or_train_classifier
    from gendd.train import make_accelerator, train_autoencoder, train_denoiser

    times: dict[str, float] = {}
    accelerator = make_accelerator(cfg, run, cpu=cpu)
    tracks_fd = bool(cfg.train.fd_every) and accelerator.is_main_process
    # Loaded before any training, so that a bad weights file fails at once, not hours later.
    inception = (InceptionFeatures(cfg.train.inception_weights, accelerator.device)
                 if tracks_fd and cfg.train.inception_weights else None)
    t = time.perf_counter()
    if (run / "generator.json").is_file() and (run / "autoencoder").is_dir():
        model = LatentModel.load(run, need_denoiser=False).to(accelerator.device)
    else:
        model = train_autoencoder(run, cfg, dataset, accelerator, progress)
        times["autoencoder_s"] = time.perf_counter() - t
    if (run / "denoiser").is_dir():
        return LatentModel.load(run).to(accelerator.device), times
    fd_tracker = None
    if tracks_fd:
        t = time.perf_counter()
        classifier = load_or_train_classifier(run / "classifier", dataset, cfg.seed,
                                              cfg.train.classifier_epochs, progress)
        times["classifier_s"] = time.perf_counter() - t
        fd_tracker = FDTracker(classifier, cfg.train.fd_samples, cfg.sampler,
                               inception=inception)
    t = time.perf_counter()
    model = train_denoiser(run, cfg, dataset, model, accelerator, fd_tracker, progress)
    times["denoiser_s"] = time.perf_counter() - t
    return model, times


def sampling_aids(run: Path, cfg: RunConfig, sampler, dataset: ImageDataset,
                  model: LatentModel, progress: bool = True) -> dict:
    """What `generate_set` needs beyond the model for `sampler`: the run's real-data classifier
    (selection) and the training set's latents with their labels (prototype seeding)."""
    aids: dict = {}
    if sampler.select != "none":
        from gendd.features import load_or_train_classifier

        aids["classifier"] = load_or_train_classifier(run / "classifier", dataset, cfg.seed,
                                                      cfg.train.classifier_epochs, progress)
    if sampler.init == "prototypes":
        from gendd.train import cached_latents

        mean, _ = cached_latents(run, model, dataset, progress)
        aids["real_latents"] = (mean, dataset.train_labels)
    return aids


# The IPC at which `refine.lr` and `refine.regression` are given as they are; both are scaled
# from it, in opposite directions (`applied_lr`, `applied_refinement`).
REFERENCE_IPC = 10
# From this many images per class up, `refine`'s `_ipc50` settings apply (`applied_refinement`):
# the one IPC above 10 where they were measured; between 10 and 50 where they start to pay is
# not known.
LARGE_IPC = 50


def applied_refinement(refine: RefineConfig, ipc: int) -> RefineConfig:
    """`refine` as applied at `ipc` images per class: its iteration count and the weights of
    DM's extra loss terms (each where it measured a gain on Fashion-MNIST, docs/BENCHMARKS.md,
    Issue 7):
    - `refine.iterations` from 2 to 49 images per class, `refine.iterations_ipc1` at one and
      `refine.iterations_ipc50` from 50 up: with the cosine schedule and the shared draw, 300
      iterations gained 0.30 points over 200 at IPC 10 and lost 0.78 at IPC 1 (3 paired rounds
      each); at IPC 50 they scored the same as 200 (2 rounds) under the tiers below 50, and
      beside every block's features and the range kept at every step 500 gained 0.18 over 300
      and 1000 another 0.13 over 500 (3 paired rounds each);
    - the MMD term (`refine.mmd`) from 2 images per class up: with one, it has no spread to
      match (its synthetic-synthetic kernel is constant) and it measured 1.1 points below plain
      DM;
    - the kernel regression term (`refine.regression`, its weight at 10 images per class) at
      every IPC, at `refine.regression` x 10 / ipc, which undoes the ipc / 10 growth of the
      image learning rate (`applied_lr`) for this term (why the unscaled weight overshoots at
      IPC 50 is assumed, not measured: its gradient per image would not shrink as 1 / ipc as
      the mean terms' does). With DM's per-class augmentation and weight 100 at IPC 10 it gains
      0.95 points (3 paired rounds); at IPC 50 weight 20 gained 0.60 (2 paired rounds) and
      weight 100 lost 0.41 (1); at IPC 1, beside the discrimination term, the scaled 1000
      gained 0.68 points (9 paired rounds), 300 lost 0.32 (6) and 3000 lost 1.26 against 1000
      (3). The default's shared augmentation (`refine.augmentation`) enlarges the term's
      gradient, hence its weight of 40 at IPC 10 (+0.33 points there; at IPC 1 the scaled 400
      with the shared draw gained 1.2 over the per-class draw at 1000, 6 paired rounds; at
      IPC 50 the scaled 8 with the shared draw gained 0.24 over the per-class draw at 20, 1,
      and twice that, 16, scored the same as 8, -0.05 in 1);
    - the centre discrimination term (`refine.discrimination`) at one image per class only,
      where each class's single image alone decides the trained network's boundaries with the
      other classes (+1.1 points); at IPC 10 it measured no gain (weight 30) or a loss (100);
    - `refine.range_projection` from 2 to 49 images per class, `refine.range_projection_ipc1`
      at one and `refine.range_projection_ipc50` from 50 up, and `refine.feature_blocks` below
      50, `refine.feature_blocks_ipc50` from 50 up: clamping the images onto the pixel range at
      every step gained 2.65 points at IPC 1 (3 paired rounds), 0.11 at IPC 50 and -0.09 at
      IPC 10 (2 each, within noise); every block's features beside it gained 0.43 at IPC 50
      (2 paired rounds) but lost 0.36 at IPC 10 (2) and 0.54 at IPC 1 (3)."""
    several = ipc > 1
    suffix = "_ipc1" if not several else "_ipc50" if ipc >= LARGE_IPC else ""
    tiered = {name: getattr(refine, name + suffix if name + suffix in tier_fields(name) else name)
              for name in ("iterations", "range_projection", "feature_blocks")}
    return dataclasses.replace(refine, **tiered,
                               mmd=refine.mmd if several else 0.0,
                               regression=refine.regression * REFERENCE_IPC / ipc,
                               discrimination=0.0 if several else refine.discrimination)


def applied_lr(lr: float, ipc: int) -> float:
    """DM's image learning rate when refining `ipc` images per class: `lr` (the rate at 10 images
    per class) times ipc / 10. DM's loss sees a class's images through their mean, so each
    image's gradient shrinks as 1 / ipc; the scaling gives every image the same step at every
    IPC (at IPC 50 it measured +1.1 points over lr 1.0, docs/BENCHMARKS.md, Issue 7)."""
    return lr * ipc / REFERENCE_IPC


def make_set(run: Path, cfg: RunConfig, sampler, refine, dataset: ImageDataset,
             model: LatentModel, ipc: int, out: Path, seed: int, progress: bool = True) -> dict:
    """Sample `ipc` images per class from the run's model into the set file `out`; with
    `refine.method == "dm"`, the sampled set is kept beside it (`NAME.sampled.safetensors`)
    and `out` holds it refined by Distribution Matching. Returns the set's metadata."""
    from gendd.generate import generate_set

    sampled = out if refine.method == "none" else out.with_name(out.stem + ".sampled.safetensors")
    meta = generate_set(model, sampled, cfg.dataset, ipc, sampler, seed,
                        **sampling_aids(run, cfg, sampler, dataset, model, progress))
    if refine.method == "none":
        return meta
    from gendd.baselines import distribution_matching
    from gendd.sets import DistilledSet, load_set, save_set

    refine = applied_refinement(refine, ipc)
    lr_img = applied_lr(refine.lr, ipc)
    t = time.perf_counter()
    dm = distribution_matching(dataset, ipc, seed, refine.iterations, lr_img=lr_img,
                               lr_schedule=refine.lr_schedule, augmentation=refine.augmentation,
                               range_projection=refine.range_projection,
                               feature_blocks=refine.feature_blocks,
                               batch_real=refine.batch_real, progress=progress,
                               init=load_set(sampled), mmd_weight=refine.mmd,
                               discrimination_weight=refine.discrimination,
                               regression_weight=refine.regression,
                               trained_nets=refine.trained_nets,
                               trained_steps=refine.trained_steps,
                               snapshot_every=refine.snapshot_every,
                               trained_share=refine.trained_share, ce_weight=refine.ce)
    meta = {**meta, "refine": {**dataclasses.asdict(refine), "lr_img": lr_img,
                               "wall_time_s": time.perf_counter() - t,
                               "sampled_set": sampled.name}}
    save_set(out, DistilledSet(dm.images, dm.labels, meta))
    return meta


def evaluate_run_set(set_path: Path, dataset: ImageDataset, cfg: RunConfig, out_json: Path,
                     progress: bool = True) -> dict:
    from gendd.evaluate import challenge_protocol, evaluate_set
    from gendd.sets import load_set

    protocol = challenge_protocol(epochs=cfg.eval.epochs, rounds=cfg.eval.rounds,
                                  model=cfg.eval.model)
    result = evaluate_set(load_set(set_path), dataset, protocol, seed=cfg.seed, progress=progress)
    result["set"] = str(set_path)
    write_json(out_json, result)
    return result


def write_summary(run: Path, summary: dict) -> None:
    path = run / "summary.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(summary)
    write_json(path, old)

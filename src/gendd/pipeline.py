"""The stages of a run, each resumable, and `distill` which chains them."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gendd.config import RefineConfig, RunConfig, SamplerConfig
from gendd.data import ImageDataset
from gendd.latent_model import DENOISER_FOLDERS, LatentModel
from gendd.real_statistics import FILE as STATISTICS_FILE
from gendd.real_statistics import load_statistics, save_statistics
from gendd.utils.atomic import write_json


def train_run(run: Path, cfg: RunConfig, dataset: ImageDataset, progress: bool = True,
              cpu: bool = False, data_free: bool = True) -> tuple[LatentModel, dict]:
    """Autoencoder, real-data classifier, denoiser, then (with `data_free`) what data-free
    generation reads: the real-data statistics of the stored refinement and the denoiser
    fine-tuned on them. Finished stages are loaded, not redone. Returns the model (with the
    base denoiser) and the wall time of each stage run now."""
    from gendd.sample_quality import FDTracker, InceptionFeatures, load_or_train_classifier
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
    if (run / "denoiser").is_dir():  # written whole (atomic_folder)
        model = LatentModel.load(run).to(accelerator.device)
    else:
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
    if data_free and cfg.train.statistics_draws and accelerator.is_main_process:
        stats = None
        if not (run / STATISTICS_FILE).is_file():
            from gendd.refine import record_statistics

            t = time.perf_counter()
            stats = record_statistics(dataset, cfg.train.statistics_draws, cfg.refine.batch_real,
                                      cfg.train.statistics_components, cfg.seed, progress)
            save_statistics(run / STATISTICS_FILE, stats)
            times["statistics_s"] = time.perf_counter() - t
        if cfg.train.finetune_iterations and not (run / DENOISER_FOLDERS["finetuned"]).is_dir():
            from gendd.finetune import finetune_denoiser

            t = time.perf_counter()
            if stats is None:  # recorded by an earlier call; just recorded, it is not read back
                stats = load_statistics(run)
            tuned = finetune_denoiser(model, stats, cfg, progress)
            tuned.save_denoiser(run, "finetuned")
            times["finetune_s"] = time.perf_counter() - t
    accelerator.wait_for_everyone()
    return model, times


def real_latents(run: Path, sampler: SamplerConfig, dataset: ImageDataset, model: LatentModel,
                 progress: bool = True) -> tuple | None:
    """The training set's latents and labels where `sampler` starts from prototypes of them
    (cached in the run), else None."""
    if sampler.init != "prototypes":
        return None
    from gendd.train import cached_latents

    mean, _ = cached_latents(run, model, dataset, progress)
    return mean, dataset.train_labels


def make_set(run: Path, cfg: RunConfig, sampler: SamplerConfig, refine: RefineConfig,
             dataset: ImageDataset | None, model: LatentModel, ipc: int, out: Path, seed: int,
             progress: bool = True) -> dict:
    """Sample `ipc` images per class from the run's model into the set file `out`; refined
    (`refine.method` dm or stored), the sampled set is kept beside it
    (`NAME.sampled.safetensors`) and `out` holds it refined. `dataset` is needed only by
    prototype starts and by dm; herding starts and stored refinement read the run's
    statistics. Returns the set's metadata."""
    from gendd.generate import generate_set

    sampled = out if refine.method == "none" else sampled_path(out)
    # read once, used twice
    statistics = load_statistics(run) if uses_statistics(sampler, refine) else None
    meta = generate_set(model, sampled, cfg.dataset, ipc, sampler, seed, progress=progress,
                        real_latents=real_latents(run, sampler, dataset, model, progress),
                        statistics=statistics)
    if refine.method == "none":
        return meta
    from gendd.refine import refine as refine_set
    from gendd.refine import settings_at
    from gendd.sets import DistilledSet, load_set, save_set

    settings = settings_at(refine, ipc)
    source = statistics if refine.method == "stored" else dataset
    t = time.perf_counter()
    refined = refine_set(source, ipc, settings, seed, init=load_set(sampled), progress=progress)
    meta = {**meta, "refine": {"method": refine.method, **refined.metadata["settings"],
                               "wall_time_s": time.perf_counter() - t,
                               "sampled_set": sampled.name}}
    save_set(out, DistilledSet(refined.images, refined.labels, meta))
    return meta


def uses_statistics(sampler: SamplerConfig, refine: RefineConfig) -> bool:
    """Whether sets made with these settings read the run's stored real-data statistics."""
    return sampler.init == "herding" or refine.method == "stored"


def uses_data_free_stages(sampler: SamplerConfig, refine: RefineConfig) -> bool:
    """Whether sets made with these settings read what `train_run`'s data-free stages write."""
    return uses_statistics(sampler, refine) or sampler.denoiser == "finetuned"


def sampled_path(out: Path) -> Path:
    """Where the set file `out`'s sampled start is kept when it is refined."""
    return out.with_name(out.stem + ".sampled.safetensors")


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

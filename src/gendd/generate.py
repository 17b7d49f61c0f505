"""Sampling a distilled set: N images per class, or as many as fit in a time budget.

Every image's starting noise, and the seed of its own per-step noise for ancestral solvers
(ddpm), are drawn from a generator seeded by (seed, class, round), so the set does not depend on
batch size or on how classes are split between processes.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gendd.config import SamplerConfig
from gendd.diffusion import sample_latents, sampling_scheduler
from gendd.errors import GenddError
from gendd.latent_model import LatentModel
from gendd.prototypes import class_prototypes
from gendd.runtime import derived_seed
from gendd.set_writer import StreamingSetWriter
from gendd.sets import check_ipc


def noise_generator(seed: int, label: int, round_index: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, label * 10_007, round_index))


def sampling_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@torch.inference_mode()
def sample_images(model: LatentModel, labels: torch.Tensor, noise: torch.Tensor,
                  sampler: SamplerConfig, step_seeds: torch.Tensor,
                  init_latents: torch.Tensor | None = None,
                  strength: float = 1.0) -> torch.Tensor:
    """Denoise `noise` (one row per label) into uint8 images, in batches. An ancestral solver's
    fresh noise at each step comes from a generator per image, seeded by `step_seeds`."""
    device = model.device
    scheduler = sampling_scheduler(model.scheduler, sampler.solver)
    out = []
    for i in range(0, len(labels), sampler.batch_size):
        part = slice(i, i + sampler.batch_size)
        lat = sample_latents(
            model.denoiser, scheduler, labels[part].to(device), model.latent_shape,
            sampler.steps, sampler.guidance, model.null_class,
            [torch.Generator().manual_seed(int(s)) for s in step_seeds[part]],
            init_latents=None if init_latents is None else init_latents[part],
            strength=strength, dtype=sampling_dtype(device), noise=noise[part])
        out.append(model.decode(lat))
    return torch.cat(out)


def round_noise(model: LatentModel, seed: int, classes, per_class: int, round_index: int):
    """Labels, starting noise and per-step noise seeds for one round: `per_class` images of each
    class in `classes`."""
    labels, noise, step_seeds = [], [], []
    for c in classes:
        g = noise_generator(seed, c, round_index)
        noise.append(torch.randn((per_class, *model.latent_shape), generator=g))
        step_seeds.append(torch.randint(0, 2 ** 62, (per_class,), generator=g))
        labels.append(torch.full((per_class,), c, dtype=torch.long))
    return torch.cat(labels), torch.cat(noise), torch.cat(step_seeds)


def set_metadata(model: LatentModel, dataset_name: str, sampler: SamplerConfig, seed: int,
                 **extra) -> dict:
    return {"dataset": dataset_name, "class_names": list(model.class_names), "seed": seed,
            "generator": "gendd latent diffusion", "sampler": asdict(sampler), **extra}


def generate_set(model: LatentModel, out: Path, dataset_name: str, ipc: int,
                 sampler: SamplerConfig, seed: int = 0, classes=None, progress: bool = True,
                 real_latents: tuple[torch.Tensor, torch.Tensor] | None = None,
                 statistics=None) -> dict:
    """Write `ipc` images of every class to `out` (a set file). Returns its metadata.

    With `sampler.init == "prototypes"`, sampling starts from k-means centres of
    `real_latents` (the training set's normalised latents and labels); with "herding", it
    keeps `ipc` of `sampler.candidates` x `ipc` samples from noise by herding against the run's
    stored real-data `statistics` (`gendd.stored_herding`)."""
    check_ipc(ipc)
    if sampler.init == "prototypes" and real_latents is None:
        raise GenddError("prototype seeding needs the training set's latents")
    if sampler.init == "herding" and statistics is None:
        raise GenddError("a herding start needs the run's stored real-data statistics")
    drawn = ipc * sampler.candidates if sampler.init == "herding" else ipc
    classes = list(range(model.num_classes)) if classes is None else list(classes)
    writer = StreamingSetWriter(out, model.num_classes, (model.geometry.channels,
                                                         model.geometry.height, model.geometry.width))
    start = time.perf_counter()
    # Group whole classes into sampler batches: one round of `ipc` images per class.
    per_batch = max(1, sampler.batch_size // drawn)
    try:
        bar = tqdm(total=ipc * len(classes), desc="generate", unit="img", disable=not progress)
        for i in range(0, len(classes), per_batch):
            group = classes[i:i + per_batch]
            labels, noise, step_seeds = round_noise(model, seed, group, drawn, 0)
            init = None
            if sampler.init == "prototypes":
                init = torch.cat([class_prototypes(*real_latents, c, ipc, seed) for c in group])
            images = sample_images(model, labels, noise, sampler, step_seeds, init_latents=init,
                                   strength=sampler.strength)
            if sampler.init == "herding":
                from gendd.stored_herding import herded

                keep = herded(statistics, images, labels, ipc)
                images, labels = images[keep], labels[keep]
            for c in group:
                writer.add(images[labels == c], c)
            bar.update(len(labels))
        bar.close()
        wall = time.perf_counter() - start
        meta = set_metadata(model, dataset_name, sampler, seed, ipc=ipc,
                            generation_wall_time_s=wall,
                            images_per_s=ipc * len(classes) / wall)
        writer.close(meta, per_class=ipc)
    except BaseException:
        writer.abort()
        raise
    return meta


def round_size_ladder(full: int) -> list[int]:
    """Images per class of the time-budget rounds: 1, 2, 4, ... up to `full`."""
    sizes = [1]
    while sizes[-1] < full:
        sizes.append(min(2 * sizes[-1], full))
    return sizes


def predict_round_s(slowest: dict[int, float], size: int) -> float:
    """Predicted wall time of a round of `size` images per class, from `slowest` (the slowest
    measured round of each size): a round never costs more than a bigger one that ran, and a
    size not yet run is scaled up from the largest that did (an overestimate, as batches are
    cheaper per image, by at most the ladder's factor 2)."""
    known = [t for s, t in slowest.items() if s >= size]
    if known:
        return min(known)
    largest = max(slowest)
    return slowest[largest] * size / largest


def generate_within_budget(model: LatentModel, out: Path, dataset_name: str, budget_s: float,
                           sampler: SamplerConfig, seed: int = 0, progress: bool = True) -> dict:
    """The challenge's generative track: as many class-balanced images as fit in `budget_s`
    seconds, decode and write included. Each round samples the same number of images for every
    class; round sizes grow 1, 2, 4, ... up to a full sampler batch, so that each prediction is
    scaled from a round at least half as big, and near the end of the budget the biggest size
    predicted to fit is taken. An incomplete round is never kept."""
    if not 0 < budget_s < float("inf"):
        raise GenddError(f"the time budget must be a positive number of seconds (got {budget_s:g})")
    if sampler.init != "noise":
        raise GenddError("the time-budget mode samples from noise (prototype seeding needs --ipc)")
    start = time.perf_counter()
    k = model.num_classes
    writer = StreamingSetWriter(out, k, (model.geometry.channels, model.geometry.height,
                                         model.geometry.width))
    ladder = round_size_ladder(max(1, sampler.batch_size // k))
    write_reserve = 0.02 * budget_s + 0.5  # time kept back for assembling the file
    slowest: dict[int, float] = {}  # images per class -> slowest round of that size (s)
    rounds = 0
    try:
        bar = tqdm(desc="generate (budget)", unit="img", disable=not progress)
        while True:
            size = 1
            if slowest:
                left = budget_s - (time.perf_counter() - start) - write_reserve
                # sizes up to one step above the largest run so far
                allowed = ladder[:ladder.index(max(slowest)) + 2]
                fitting = [s for s in allowed if predict_round_s(slowest, s) <= left]
                if not fitting:
                    break
                size = fitting[-1]
            t0 = time.perf_counter()
            labels, noise, step_seeds = round_noise(model, seed, range(k), size, rounds)
            images = sample_images(model, labels, noise, sampler, step_seeds)
            for c in range(k):
                writer.add(images[labels == c], c)
            slowest[size] = max(slowest.get(size, 0.0), time.perf_counter() - t0)
            rounds += 1
            bar.update(len(labels))
            if rounds == 1 and time.perf_counter() - start + write_reserve > budget_s:
                raise GenddError(f"a time budget of {budget_s:g} s is too short for one image per "
                                 f"class (one round took {time.perf_counter() - start:.1f} s)")
        bar.close()
        ipc = min(writer.counts)
        wall = time.perf_counter() - start
        meta = set_metadata(model, dataset_name, sampler, seed, ipc=ipc, time_budget_s=budget_s,
                            generation_wall_time_s=wall, images_per_s=ipc * k / wall, rounds=rounds,
                            # why not even one more image per class fitted
                            predicted_round_s=predict_round_s(slowest, 1))
        writer.close(meta, per_class=ipc)
    except BaseException:
        writer.abort()
        raise
    meta["generation_wall_time_s"] = time.perf_counter() - start
    return meta

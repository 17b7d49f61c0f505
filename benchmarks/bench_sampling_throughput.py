"""Sampling throughput of a model of a given size (issue 6's GPU target: the CIFAR-100-sized
`full` model at 32x32, >= 2,000 images/s): images per second of `generate_set` from noise
(DPM-Solver++ with classifier-free guidance in one batched forward, decode and set write
included: `gendd generate --init noise --refine none`) at several step counts, on the default
device (cuda when there is one). The default prototype start needs the training set's latents;
at its strength 0.5 it runs the last half of the steps, plus a k-means per class.

The networks are freshly initialised, not trained: speed depends on the architecture, not on
the weights, so this needs neither data nor a trained run. A warm-up set of the same size is
made first so that library start-up and kernel selection stay out of the figures.

    python benchmarks/bench_sampling_throughput.py                       # cifar-100, full preset
    python benchmarks/bench_sampling_throughput.py --dataset fashion-mnist --preset quick --ipc 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def untrained_model(dataset: str, preset: str, seed: int = 0):
    """A LatentModel with the preset's architecture for the data set's image size and classes."""
    import torch

    from gendd.config import resolve_config
    from gendd.data import dataset_info
    from gendd.latent_model import LatentModel
    from gendd.train import autoencoder_for, denoiser_for, image_geometry

    info = dataset_info(dataset)
    cfg = resolve_config(info.name, preset, seed)
    torch.manual_seed(seed)
    names = tuple(f"class {i}" for i in range(info.num_classes))
    model = LatentModel(autoencoder_for(cfg, info.channels), None, image_geometry(cfg, info),
                        names, cfg.denoiser.prediction_type, cfg.denoiser.beta_schedule)
    model.denoiser = denoiser_for(cfg, model.latent_shape, info.num_classes).eval()
    return model, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar-100")
    ap.add_argument("--preset", default="full")
    ap.add_argument("--ipc", type=int, default=50, help="images per class of each timed set")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from gendd.runtime import default_device
    from gendd.generate import generate_set, sampling_dtype

    device = default_device()
    model, cfg = untrained_model(args.dataset, args.preset)
    model.to(device)
    # From noise: prototype seeding needs the training set's latents (see the docstring).
    sampler = replace(cfg.sampler, init="noise", batch_size=args.batch_size or cfg.sampler.batch_size)
    params = {name: sum(p.numel() for p in net.parameters())
              for name, net in (("autoencoder", model.autoencoder), ("denoiser", model.denoiser))}
    header = {"dataset": args.dataset, "preset": args.preset, "device": str(device),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
              "torch": torch.__version__, "sampling_dtype": str(sampling_dtype(device)),
              "latent_shape": list(model.latent_shape), "parameters": params,
              "batch_size": sampler.batch_size, "classes": model.num_classes, "ipc": args.ipc}
    print(json.dumps(header), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate_set(model, Path(tmp) / "warmup.safetensors", args.dataset, args.ipc,
                     replace(sampler, steps=1), progress=False)
        print(f"warm-up {time.perf_counter() - t:.1f} s", flush=True)
        for steps in args.steps:
            meta = generate_set(model, Path(tmp) / f"steps{steps}.safetensors", args.dataset,
                                args.ipc, replace(sampler, steps=steps), progress=False)
            rows.append({"steps": steps, "images": meta["ipc"] * model.num_classes,
                         "wall_s": round(meta["generation_wall_time_s"], 3),
                         "images_per_s": round(meta["images_per_s"], 1)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| steps | images | wall s | images/s |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['steps']} | {r['images']} | {r['wall_s']:.2f} | {r['images_per_s']:.0f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({**header, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

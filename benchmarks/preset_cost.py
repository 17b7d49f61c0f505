"""What a preset's training costs on one GPU: an estimate from counts, not a measurement.

For the networks gendd builds for a preset, one training step (forward and backward) is run on
the CPU at batch 1 and counted two ways: FLOPs (torch's FlopCounterMode: matmuls, convolutions,
attention; norms and activations are not counted) and tensor operations (each is about one
kernel launch on a GPU). A step then takes at least the longer of
  compute  = batch x FLOPs per image / (peak x utilisation)
  dispatch = operations x time per operation (eager PyTorch launches kernels one by one)
and the hours are the steps times that, plus the FD evaluations (compute only).

    python benchmarks/preset_cost.py --preset full --peak-tflops 989 --utilisation 0.15 0.4
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from gendd.config import resolve_config
from gendd.diffusion import diffusion_loss, training_scheduler
from gendd.models.autoencoder import downsample_factor
from gendd.train import AutoencoderObjective, autoencoder_for, denoiser_for, image_geometry

DATASETS = {"cifar-100": (3, 32, 100, 50_000), "tiny-imagenet": (3, 64, 200, 100_000)}


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def flops_and_ops(fn) -> tuple[int, int]:
    with FlopCounterMode(display=False) as flops:
        fn()
    with OpCounter() as ops:
        fn()
    return flops.get_total_flops(), ops.ops


def stages(name: str, preset: str) -> tuple[dict, list[dict]]:
    """The data set's facts and, per training stage: steps, batch, FLOPs and ops per image."""
    channels, size, classes, train_images = DATASETS[name]
    cfg = resolve_config(name, preset)
    a, d, s, t = cfg.autoencoder, cfg.denoiser, cfg.sampler, cfg.train
    geometry = image_geometry(cfg, SimpleNamespace(channels=channels, image_size=(size, size)))
    ae = autoencoder_for(cfg, channels)
    f = downsample_factor(a.block_out_channels)
    latent = (a.latent_channels, geometry.padded[0] // f, geometry.padded[1] // f)
    unet = denoiser_for(cfg, latent, classes)
    objective = AutoencoderObjective(ae, geometry, a.kl_weight)
    images = torch.randint(0, 256, (1, channels, size, size), dtype=torch.uint8)
    z, sched = torch.randn(1, *latent), training_scheduler(d.prediction_type, d.beta_schedule)

    def unet_loss():
        return diffusion_loss(unet, z, torch.zeros(1, dtype=torch.long), sched,
                              torch.randn_like(z), torch.tensor([500]), torch.ones(1), classes,
                              d.label_dropout)

    ae_flops, ae_ops = flops_and_ops(lambda: objective(images, torch.randn(1, *latent)).backward())
    unet_flops, unet_ops = flops_and_ops(lambda: unet_loss().backward())
    with torch.no_grad():
        fwd, _ = flops_and_ops(unet_loss)
        decode, _ = flops_and_ops(lambda: ae.decode(z))
    # Every fd_every steps: fd_samples images of `steps` solver steps (2 passes: guidance) and a
    # decode each.
    evals = d.steps // t.fd_every if t.fd_every else 0
    facts = {"dataset": name, "latent": "x".join(map(str, latent)),
             "ae_params_M": sum(p.numel() for p in ae.parameters()) / 1e6,
             "unet_params_M": sum(p.numel() for p in unet.parameters()) / 1e6}
    return facts, [
        {"stage": "autoencoder", "steps": a.steps, "batch": a.batch_size, "flops": ae_flops,
         "ops": ae_ops, "unit": f"steps ({a.steps * a.batch_size / train_images:.0f} epochs)"},
        {"stage": "denoiser", "steps": d.steps, "batch": d.batch_size, "flops": unet_flops,
         "ops": unet_ops, "unit": f"steps ({d.steps * d.batch_size / train_images:.0f} epochs)"},
        {"stage": "FD tracking", "steps": evals, "batch": t.fd_samples,
         "flops": s.steps * 2 * fwd + decode, "ops": 0, "unit": "evaluations"},
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="full")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense BF16 peak (H100 SXM: 989; H100 PCIe: 756)")
    p.add_argument("--utilisation", type=float, nargs=2, default=[0.15, 0.4],
                   help="the share of the peak reached (low, high)")
    p.add_argument("--us-per-op", type=float, nargs=2, default=[4.0, 8.0],
                   help="launch and dispatch time per tensor operation, us (low, high)")
    args = p.parse_args()
    for name in DATASETS:
        facts, rows = stages(name, args.preset)
        print(f"{name}: latents {facts['latent']}, autoencoder {facts['ae_params_M']:.1f}M "
              f"parameters, denoiser {facts['unet_params_M']:.1f}M")
        hours = [0.0, 0.0]  # best case (high utilisation, fast dispatch), worst case
        for r in rows:
            tflop = r["batch"] * r["flops"] / 1e12
            ms = []
            for k, (util, us) in enumerate(zip(sorted(args.utilisation, reverse=True),
                                               sorted(args.us_per_op))):
                compute = tflop / (args.peak_tflops * util) * 1e3
                ms.append(max(compute, r["ops"] * us / 1e3))
                hours[k] += r["steps"] * ms[-1] / 3.6e6
            print(f"  {r['stage']}: {r['steps']} {r['unit']} x {r['batch']} images, "
                  f"{r['flops'] / 1e9:.2f} GFLOP/image, {tflop:.2f} TFLOP and {r['ops']} "
                  f"operations each -> {ms[0]:.1f}-{ms[1]:.1f} ms each")
        print(f"  total: {hours[0]:.1f}-{hours[1]:.1f} h at {min(args.utilisation):.0%}-"
              f"{max(args.utilisation):.0%} of {args.peak_tflops:.0f} TFLOP/s and "
              f"{min(args.us_per_op):g}-{max(args.us_per_op):g} us per operation")


if __name__ == "__main__":
    main()

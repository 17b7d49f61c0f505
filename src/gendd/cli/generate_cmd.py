"""`gendd generate`: sample a distilled set from a trained run."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import data_root_option, seed_option
from gendd.config import (AUGMENTATION_DRAWS, FEATURE_BLOCKS, LR_SCHEDULES,
                          RANGE_PROJECTIONS, tier_fields)


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--ipc", type=int, default=None, help="Images per class.")
@click.option("--time-budget", type=float, default=None, metavar="SECONDS",
              help="Instead of --ipc: as many class-balanced images as fit in this time "
                   "(the challenge's generative track), decode and write included.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Set file to write (default RUN/distilled/ipcN.safetensors or "
                   "RUN/distilled/budget<SECONDS>s.safetensors, e.g. budget60s.safetensors).")
@click.option("--solver", default=None, help="dpm++ | unipc | ddim | ddpm (default: the run's).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Solver steps (default: the run's).")
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per sampler batch.")
@click.option("--oversample", type=click.IntRange(min=1), default=None,
              help="Draw this many times IPC candidates per class and keep IPC (see --select).")
@click.option("--select", type=click.Choice(["none", "confident-kcenter"]), default=None,
              help="How to keep IPC of the candidates: confident-kcenter uses the run's "
                   "real-data classifier (correctly classified, spread by k-center).")
@click.option("--init", type=click.Choice(["noise", "prototypes"]), default=None,
              help="Start from noise, or from k-means centres of each class's real training "
                   "latents noised to --strength (prototype seeding; needs --ipc). Default: "
                   "the run's, except that --time-budget samples from noise.")
@click.option("--strength", type=float, default=None,
              help="With --init prototypes: how far the centres are noised (1.0 = pure noise).")
@click.option("--refine", type=click.Choice(["none", "dm"]), default=None,
              help="With --ipc: refine the sampled set by Distribution Matching started from it "
                   "(the sampled set is kept as OUT's NAME.sampled.safetensors). Default: the "
                   "run's refine.method. --time-budget sets are never refined.")
@click.option("--refine-iterations", type=click.IntRange(min=0), default=None,
              help="DM iterations of --refine dm, at any IPC (default: the run's "
                   "refine.iterations, refine.iterations_ipc1 at --ipc 1, "
                   "refine.iterations_ipc50 from --ipc 50 up).")
@click.option("--refine-mmd", type=click.FloatRange(min=0), default=None,
              help="Weight of the Gaussian-kernel MMD term of --refine dm (0: plain DM; "
                   "default: the run's refine.mmd). Not applied at --ipc 1.")
@click.option("--refine-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="DM's image learning rate at 10 images per class, scaled by IPC/10 "
                   "(default: the run's refine.lr).")
@click.option("--refine-schedule", type=click.Choice(LR_SCHEDULES), default=None,
              help="Schedule of that rate over the DM iterations: cosine anneals it to 0 "
                   "(default: the run's refine.lr_schedule).")
@click.option("--refine-augmentation", type=click.Choice(AUGMENTATION_DRAWS), default=None,
              help="DM's DSA draws: one shared by all classes per iteration, or one per class "
                   "(DM's; default: the run's refine.augmentation).")
@click.option("--refine-range", type=click.Choice(RANGE_PROJECTIONS), default=None,
              help="When DM's images are clamped onto the valid pixel range, at any IPC: after "
                   "every step, or only when the set is written (DM's; default: the run's "
                   "refine.range_projection, refine.range_projection_ipc1 at --ipc 1, "
                   "refine.range_projection_ipc50 from --ipc 50 up).")
@click.option("--refine-features", type=click.Choice(FEATURE_BLOCKS), default=None,
              help="The ConvNet blocks DM embeds with, at any IPC: the last (DM's) or all of "
                   "them, pooled and side by side (default: the run's refine.feature_blocks, "
                   "refine.feature_blocks_ipc50 from --ipc 50 up).")
@click.option("--refine-discrimination", type=click.FloatRange(min=0), default=None,
              help="Weight of --refine dm's centre discrimination term (the set's class "
                   "centres must classify real images; 0: off; default: the run's "
                   "refine.discrimination). Applied at --ipc 1 only.")
@click.option("--refine-regression", type=click.FloatRange(min=0), default=None,
              help="Weight of --refine dm's kernel regression term (a ridge regression on the "
                   "set must predict real images' labels; 0: off; default: the run's "
                   "refine.regression), the weight at 10 images per class: scaled by 10/IPC.")
@click.option("--refine-trained-nets", type=click.IntRange(min=0), default=None,
              help="Networks trained on real images whose snapshots --refine dm embeds with "
                   "in a share of its iterations (IDM's model sampling; 0: random networks "
                   "only; default: the run's refine.trained_nets).")
@click.option("--refine-ce", type=click.FloatRange(min=0), default=None,
              help="Weight of IDM's class term (cross-entropy of the trained snapshots on the "
                   "set) with --refine-trained-nets (default: the run's refine.ce).")
@data_root_option
@seed_option
@click.option("--force", is_flag=True, help="Overwrite an existing set file.")
def generate(run, ipc, time_budget, out, solver, steps, guidance, batch_size, oversample, select,
             init, strength, refine, refine_iterations, refine_mmd, refine_lr, refine_schedule,
             refine_augmentation, refine_range, refine_features, refine_discrimination,
             refine_regression, refine_trained_nets, refine_ce, data_root, seed, force):
    """Write a distilled set sampled from the trained model in RUN."""
    import dataclasses

    from gendd.errors import GenddError
    from gendd.evaluate import default_device
    from gendd.generate import generate_within_budget
    from gendd.latent_model import LatentModel
    from gendd.run_dir import read_config

    if (ipc is None) == (time_budget is None):
        raise GenddError("give exactly one of --ipc and --time-budget")
    if ipc is not None and ipc < 1:
        raise GenddError(f"--ipc must be at least 1 (got {ipc})")
    if time_budget is not None and time_budget <= 0:
        raise GenddError(f"--time-budget must be positive (got {time_budget:g})")
    cfg = read_config(run) if run.is_dir() else None
    if cfg is None:
        raise GenddError(f"{run}: not a gendd run directory (no config.yaml)")
    if time_budget is not None and init is None:
        if strength is not None:
            raise GenddError("--strength applies to prototype seeding, which needs --ipc")
        init = "noise"  # prototype seeding needs the IPC in advance
    model = LatentModel.load(run).to(default_device())
    changes = {k: v for k, v in dict(solver=solver, steps=steps, guidance=guidance,
                                     batch_size=batch_size, oversample=oversample,
                                     select=select, init=init,
                                     strength=strength).items() if v is not None}
    sampler = dataclasses.replace(cfg.sampler, **changes)
    if out is None:
        name = f"ipc{ipc}" if ipc is not None else f"budget{time_budget:g}s"
        out = run / "distilled" / f"{name}.safetensors"
    if out.exists() and not force:
        raise GenddError(f"{out}: exists (use --force to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if time_budget is not None and refine == "dm":
        raise GenddError("--time-budget sets are sampled only: --refine dm needs --ipc")
    if ipc is not None:
        from gendd.data import load_dataset
        from gendd.pipeline import make_set

        flags = dict(method=refine, iterations=refine_iterations, mmd=refine_mmd, lr=refine_lr,
                     lr_schedule=refine_schedule, augmentation=refine_augmentation,
                     range_projection=refine_range, feature_blocks=refine_features,
                     discrimination=refine_discrimination, regression=refine_regression,
                     trained_nets=refine_trained_nets, ce=refine_ce)
        # A flag holds at every IPC: it sets the setting's per-IPC variants too.
        refine_cfg = dataclasses.replace(cfg.refine, **{
            key: value for name, value in flags.items() if value is not None
            for key in tier_fields(name)})
        meta = make_set(run, cfg, sampler, refine_cfg, load_dataset(cfg.dataset, data_root),
                        model, ipc, out, seed)
    else:
        meta = generate_within_budget(model, out, cfg.dataset, time_budget, sampler, seed)
    click.echo(f"wrote {out}: {meta['ipc']} images per class, "
               f"{meta['generation_wall_time_s']:.1f} s, {meta['images_per_s']:.1f} images/s")

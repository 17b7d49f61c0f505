"""`gendd generate`: sample a distilled set from a trained run."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import (check_output, data_root_option, force_option, ipc_option,
                               parse_overrides, seed_option, set_option)
from gendd.config import CHOICES


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@ipc_option
@click.option("--time-budget", type=float, default=None, metavar="SECONDS",
              help="Instead of --ipc: as many class-balanced images as fit in this time "
                   "(the challenge's generative track), decode and write included; sampled "
                   "from noise by the run's fine-tuned denoiser, never refined.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Set file to write (default RUN/distilled/ipcN.safetensors or "
                   "RUN/distilled/budget<SECONDS>s.safetensors).")
@click.option("--solver", type=click.Choice(CHOICES["sampler.solver"]), default=None,
              help="Sampling solver (default: the run's sampler.solver).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Solver steps (default: the run's sampler.steps).")
@click.option("--guidance", type=float, default=None,
              help="Classifier-free guidance scale (default: the run's sampler.guidance).")
@click.option("--refine", type=click.Choice(CHOICES["refine.method"]), default=None,
              help="With --ipc: refine the sampled set by Distribution Matching against the "
                   "real data (dm) or against the real-data statistics stored in RUN (stored: "
                   "started by herding samples against them, the data set is never read); "
                   "the sampled set is kept "
                   "beside it as NAME.sampled.safetensors (default: the run's refine.method).")
@set_option
@data_root_option
@seed_option
@force_option
def generate(run, ipc, time_budget, out, solver, steps, guidance, refine, overrides, data_root,
             seed, force):
    """Write a distilled set sampled from the trained model in RUN.

    Any sampler.* or refine.* setting can be changed with --set (e.g. --set
    refine.iterations=500 holds at every IPC; --set sampler.init=noise)."""
    from gendd.config import with_overrides
    from gendd.errors import GenddError
    from gendd.pipeline import sampled_path
    from gendd.run_dir import lock_run, read_config

    if (ipc is None) == (time_budget is None):
        raise GenddError("give exactly one of --ipc and --time-budget")
    cfg = read_config(run) if run.is_dir() else None
    if cfg is None:
        raise GenddError(f"{run}: not a gendd run directory (no config.yaml)")
    flags = {"sampler.solver": solver, "sampler.steps": steps, "sampler.guidance": guidance,
             "refine.method": refine}
    if time_budget is not None:
        if refine not in (None, "none"):
            raise GenddError(f"--time-budget sets are sampled only: --refine {refine} needs --ipc")
        flags.update({"sampler.init": "noise", "refine.method": "none",
                      "sampler.denoiser": "finetuned"})
    elif refine == "stored":
        flags["sampler.init"] = "herding"  # prototypes are of the real latents
    changes = {**{k: v for k, v in flags.items() if v is not None}, **parse_overrides(overrides)}
    cfg = with_overrides(cfg, changes, sections=("sampler", "refine"))
    if out is None:
        name = f"ipc{ipc}" if ipc is not None else f"budget{time_budget:g}s"
        out = run / "distilled" / f"{name}.safetensors"
    check_output(out, force)
    if cfg.refine.method != "none":
        # In the run's own folder, a sampled set without its refined set is what a killed
        # generate left: the same command again redoes it.
        check_output(sampled_path(out),
                     force or (out.parent == run / "distilled" and not out.exists()))
    with lock_run(run):
        meta = _sample(run, cfg, ipc, time_budget, out, data_root, seed)
    click.echo(f"wrote {out}: {meta['ipc']} images per class, "
               f"{meta['generation_wall_time_s']:.1f} s, {meta['images_per_s']:.1f} images/s")


def _sample(run, cfg, ipc, time_budget, out, data_root, seed) -> dict:
    from gendd.generate import generate_within_budget
    from gendd.latent_model import LatentModel
    from gendd.runtime import default_device

    model = LatentModel.load(run, denoiser=cfg.sampler.denoiser).to(default_device())
    if ipc is None:
        return generate_within_budget(model, out, cfg.dataset, time_budget, cfg.sampler, seed)
    from gendd.data import load_dataset
    from gendd.pipeline import make_set

    needs_data = cfg.refine.method == "dm" or cfg.sampler.init == "prototypes"
    dataset = load_dataset(cfg.dataset, data_root) if needs_data else None
    return make_set(run, cfg, cfg.sampler, cfg.refine, dataset, model, ipc, out, seed)

"""`gendd baseline random|herding|dm`: write a baseline set file."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import (check_output, data_root_option, dataset_option, force_option,
                               parse_overrides, seed_option, set_option)


@main.command("baseline")
@click.argument("method", type=click.Choice(["random", "herding", "dm"]))
@dataset_option
@data_root_option
@click.option("--ipc", type=click.IntRange(min=1), required=True, help="Images per class.")
@seed_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Set file to write (.safetensors).")
@force_option
@click.option("--init", "init_path", type=click.Path(dir_okay=False), default=None,
              help="dm: start from this set (IPC images per class, e.g. `gendd generate`'s) "
                   "instead of random real images.")
@set_option
@click.option("--features", type=click.Choice(["trained", "random"]), default="trained",
              show_default=True, help="herding: feature space (a ConvNet trained on real data, "
                                      "or an untrained one).")
@click.option("--feature-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="herding: epochs to train the feature ConvNet.")
@click.option("--feature-train-per-class", type=click.IntRange(min=1), default=500,
              show_default=True, help="herding: real images per class to train it on.")
@click.option("--quiet", "-q", is_flag=True, default=False, help="No progress bars.")
def baseline_cmd(method, dataset, data_root, ipc, seed, out, force, init_path, overrides,
                 features, feature_epochs, feature_train_per_class, quiet):
    """Make a baseline distilled set: random real images, herding, or Distribution Matching.

    dm runs gendd's refinement with the DM paper's settings (1000 iterations, image learning
    rate 1.0, one DSA draw per class, no extra terms); --set refine.KEY=VALUE changes any of
    them, so that --init SAMPLED_SET with a run's refine settings repeats its refinement."""
    from gendd import baselines
    from gendd.data import load_dataset
    from gendd.errors import GenddError
    from gendd.sets import load_set, save_set

    if method != "dm" and (init_path is not None or overrides):
        raise GenddError("--init and --set are options of dm only")
    settings = _dm_settings(overrides, ipc) if method == "dm" else None
    check_output(out, force)
    ds = load_dataset(dataset, data_root)
    if method == "random":
        dset = baselines.random_real(ds, ipc, seed)
    elif method == "herding":
        dset = baselines.herding(ds, ipc, seed, features, feature_train_per_class,
                                 feature_epochs, progress=not quiet)
    else:
        from gendd.refine import refine

        init = None if init_path is None else load_set(init_path)
        dset = refine(ds, ipc, settings, seed, init=init, progress=not quiet)
    save_set(out, dset)
    click.echo(f"wrote {out}: {len(dset)} images ({ipc} per class, {method}, seed {seed})")


def _dm_settings(overrides, ipc):
    """DM_PAPER's settings with the --set refine.* overrides, as applied at `ipc`."""
    import dataclasses

    from gendd.config import RunConfig, with_overrides
    from gendd.refine import DM_PAPER, settings_at

    cfg = dataclasses.replace(RunConfig(), refine=DM_PAPER)
    cfg = with_overrides(cfg, parse_overrides(overrides), sections=("refine",))
    return settings_at(cfg.refine, ipc)

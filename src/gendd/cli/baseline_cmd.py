"""`gendd baseline random|herding|dm`: write a baseline set file."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import data_root_option, dataset_option, seed_option


@main.command("baseline")
@click.argument("method", type=click.Choice(["random", "herding", "dm"]))
@dataset_option
@data_root_option
@click.option("--ipc", type=int, required=True, help="Images per class.")
@seed_option
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True,
              help="Set file to write (.safetensors).")
@click.option("--force", is_flag=True, default=False, help="Overwrite --out if it exists.")
@click.option("--iterations", type=click.IntRange(min=0), default=1000, show_default=True,
              help="dm: optimisation iterations (the paper runs 20000).")
@click.option("--batch-real", type=click.IntRange(min=1), default=256, show_default=True,
              help="dm: real images per class per iteration.")
@click.option("--mmd-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="dm: add a Gaussian-kernel MMD term with this weight (0: plain DM).")
@click.option("--attention-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="dm: add DataDAM's spatial attention matching with this weight (0: plain DM).")
@click.option("--discrimination-weight", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="dm: add a term that makes the synthetic class centres "
                                      "classify the real images (0: plain DM).")
@click.option("--regression-weight", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="dm: add a term that makes a kernel ridge regression on "
                                      "the synthetic images predict the real images' labels "
                                      "(0: plain DM).")
@click.option("--trained-nets", type=click.IntRange(min=0), default=0, show_default=True,
              help="dm: networks trained on real images whose snapshots embed in a share of "
                   "the iterations (IDM's model sampling; 0: plain DM).")
@click.option("--ce-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="dm: weight of IDM's class term with --trained-nets.")
@click.option("--init", "init_path", type=click.Path(dir_okay=False), default=None,
              help="dm: start from this set (IPC images per class, e.g. `gendd generate`'s) "
                   "instead of random real images, to refine it.")
@click.option("--features", type=click.Choice(["trained", "random"]), default="trained",
              show_default=True, help="herding: feature space (a ConvNet trained on real data, "
                                      "or an untrained one).")
@click.option("--feature-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="herding: epochs to train the feature ConvNet.")
@click.option("--feature-train-per-class", type=click.IntRange(min=1), default=500,
              show_default=True, help="herding: real images per class to train it on.")
@click.option("--quiet", "-q", is_flag=True, default=False, help="No progress bars.")
def baseline_cmd(method, dataset, data_root, ipc, seed, out, force, iterations, batch_real,
                 mmd_weight, attention_weight, discrimination_weight, regression_weight,
                 trained_nets, ce_weight,
                 init_path, features, feature_epochs, feature_train_per_class, quiet):
    """Make a baseline distilled set: random real images, herding, or Distribution Matching."""
    from gendd import baselines
    from gendd.data import load_dataset
    from gendd.errors import GenddError
    from gendd.sets import load_set, save_set

    out = Path(out)
    if out.exists() and not force:
        raise GenddError(f"{out} exists (use --force to overwrite)")
    if ipc < 1:
        raise GenddError(f"--ipc must be at least 1, got {ipc}")
    if method != "dm" and (init_path is not None or mmd_weight or attention_weight
                           or discrimination_weight or regression_weight or trained_nets
                           or ce_weight):
        raise GenddError("--init, --mmd-weight, --attention-weight, --discrimination-weight, "
                         "--regression-weight, --trained-nets and --ce-weight are options of "
                         "dm only")
    ds = load_dataset(dataset, data_root)
    if method == "random":
        dset = baselines.random_real(ds, ipc, seed)
    elif method == "herding":
        dset = baselines.herding(ds, ipc, seed, features, feature_train_per_class,
                                 feature_epochs, progress=not quiet)
    else:
        init = None if init_path is None else load_set(init_path)
        dset = baselines.distribution_matching(ds, ipc, seed, iterations, batch_real=batch_real,
                                               progress=not quiet, init=init,
                                               mmd_weight=mmd_weight,
                                               attention_weight=attention_weight,
                                               discrimination_weight=discrimination_weight,
                                               regression_weight=regression_weight,
                                               trained_nets=trained_nets, ce_weight=ce_weight)
    save_set(out, dset)
    click.echo(f"wrote {out}: {len(dset)} images ({ipc} per class, {method}, seed {seed})")

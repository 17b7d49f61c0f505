"""`gendd evaluate SET`: the challenge protocol on a gendd set file or a challenge submission."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import (check_output, data_root_option, dataset_option, force_option,
                               seed_option)
from gendd.models.zoo import MODELS


@main.command("evaluate")
@click.argument("set_path", metavar="SET", type=click.Path(dir_okay=False))
@dataset_option
@data_root_option
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help="Training epochs (default: the challenge's 1000).")
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Fresh networks trained and tested (default 3).")
@seed_option
@click.option("--model", type=str, default="convnet", show_default=True,
              help=f"Evaluation network: {', '.join(MODELS)}.")
@click.option("--submission", is_flag=True, default=False,
              help="SET is a challenge submission (normalised float tensor .pt, ordered by "
                   "class); implied by a .pt suffix.")
@click.option("--reference", is_flag=True, default=False,
              help="Use the straightforward fp32 formulation instead of the fast one.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the result as JSON here.")
@force_option
@click.option("--quiet", "-q", is_flag=True, default=False, help="No progress bars.")
def evaluate_cmd(set_path, dataset, data_root, epochs, rounds, seed, model, submission,
                 reference, json_out, force, quiet):
    """Train fresh networks on SET and report top-1 accuracy on the real test set (mean ± std
    over rounds), exactly as the ECCV 2024 Dataset Distillation Challenge does."""
    from gendd.data import load_dataset
    from gendd.evaluate import (challenge_protocol, evaluate_set, evaluate_tensors,
                                load_submission, summary_line)
    from gendd.sets import load_set
    from gendd.utils.atomic import write_json

    overrides = {"model": model, "fast": not reference}
    if epochs is not None:
        overrides["epochs"] = epochs
    if rounds is not None:
        overrides["rounds"] = rounds
    protocol = challenge_protocol(**overrides)  # an unknown model fails here, before any I/O
    if json_out:
        check_output(json_out, force)
    ds = load_dataset(dataset, data_root)
    path = Path(set_path)
    if submission or path.suffix == ".pt":
        images, labels = load_submission(path, ds)
        result = evaluate_tensors(images, labels, ds, protocol, seed, progress=not quiet,
                                  source={"kind": "submission", "path": str(path)})
    else:
        result = evaluate_set(load_set(path), ds, protocol, seed, progress=not quiet)
        result["source"]["path"] = str(path)
    if json_out:
        write_json(json_out, result)
    click.echo(summary_line(result))

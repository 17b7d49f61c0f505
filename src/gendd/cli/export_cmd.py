"""`gendd export`: a set in the challenge's format, as an image folder, or as a grid."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main
from gendd.cli.options import check_output, force_option


@main.command()
@click.argument("set_path", metavar="SET", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(["challenge", "imagefolder", "grid"]),
              help="challenge: normalised float tensor .pt ordered by class; imagefolder: one "
                   "PNG per image in class folders; grid: one PNG, a row per class.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path))
@click.option("--dataset", "-d", default=None, help="Data set (default: the one the set names).")
@force_option
def export(set_path, fmt, out, dataset, force):
    """Write SET in another format."""
    from gendd.export import export_set
    from gendd.sets import load_set

    check_output(out, force, folder=fmt == "imagefolder")
    export_set(load_set(set_path), fmt, out, dataset)
    click.echo(f"wrote {out}")

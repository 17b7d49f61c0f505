"""`gendd report`: class grids, training curves and result tables of a run."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
def report(run):
    """Write RUN/report: a class grid per set, training curves, results (Markdown + HTML)."""
    from gendd.errors import GenddError
    from gendd.report import write_report

    if not (run / "config.yaml").is_file():
        raise GenddError(f"{run}: not a gendd run directory (no config.yaml)")
    out = write_report(run)
    click.echo(f"report: {out / 'index.html'}")

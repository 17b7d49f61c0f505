"""`gendd report`: the run's page, report/index.html."""

from __future__ import annotations

from pathlib import Path

import click

from gendd.cli import main


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
def report(run):
    """Write RUN/report/index.html: the distilled sets by class (before and after refinement),
    training curves, accuracy beside random real images and published figures, per-class
    accuracy and confusion, stage times, the configuration, and what the run still lacks.
    Works on any run, finished or not."""
    from gendd.errors import GenddError
    from gendd.report import write_report

    if not (run / "config.yaml").is_file():
        raise GenddError(f"{run}: not a gendd run directory (no config.yaml)")
    out = write_report(run)
    click.echo(f"report: {out / 'index.html'}")

"""Options and checks shared by several sub-commands, defined once."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from gendd.errors import GenddError

dataset_option = click.option("--dataset", "-d", required=True,
                              help="Data set: fashion-mnist, mnist, cifar-10, cifar-100, "
                                   "tiny-imagenet, or imagefolder[:OPTIONS] for your own images "
                                   "(see `gendd datasets`).")
data_root_option = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                                 envvar="GENDD_DATA_ROOT",
                                 help="Folder holding the data set's files, its official archive "
                                      "or a sub-folder named like the data set; for "
                                      "imagefolder, the folder of class folders.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
ipc_option = click.option("--ipc", type=click.IntRange(min=1), help="Images per class.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one configuration value, e.g. --set denoiser.steps=5000 "
                               "(repeatable; see RUN/config.yaml for the keys).")
force_option = click.option("--force", is_flag=True, help="Overwrite an existing output.")


def parse_overrides(overrides: tuple[str, ...]) -> dict:
    from gendd.config import parse_override

    return dict(parse_override(o) for o in overrides)


def check_output(path: Path, force: bool, folder: bool = False) -> None:
    """Before any work: `path` can be written (its parent made and writable; a file is not a
    directory), and an existing output there is only replaced with --force."""
    if path.is_dir() and not folder:
        raise GenddError(f"{path}: is a directory, not a file")
    if path.exists() and not force:
        raise GenddError(f"{path}: exists (use --force to overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise GenddError(f"{path}: cannot write there ({e.strerror or e})") from None

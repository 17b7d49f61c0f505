"""Options shared by several sub-commands, defined once."""

import click

dataset_option = click.option("--dataset", "-d", required=True,
                              help="Data set name: fashion-mnist or mnist.")
data_root_option = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                                 envvar="GENDD_DATA_ROOT",
                                 help="Folder holding the data set files (or its sub-folder).")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")

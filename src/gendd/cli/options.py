"""Options shared by several sub-commands, defined once."""

import click

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

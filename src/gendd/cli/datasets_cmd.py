"""`gendd datasets`: what data sets are known and where they are; read one fully; fetch one."""

from __future__ import annotations

import time

import click

from gendd.cli import main
from gendd.cli.options import data_root_option


def _shape(info) -> str:
    if info.channels is None:
        return "any"
    return f"{info.channels}x{info.image_size[0]}x{info.image_size[1]}"


def _list(data_root) -> None:
    from gendd.data import DATASETS

    rows = [("name", "classes", "images", "where")]
    for name, info in DATASETS.items():
        found = info.locate(data_root)
        where = (f"{found}{' (archive)' if found.is_file() else ''}" if found is not None
                 else f"not found: {info.how_to_get}")
        rows.append((name, str(info.num_classes or "any"), _shape(info), where))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])


def _check(name, data_root, trust_archive) -> None:
    import torch

    from gendd.data import dataset_info
    from gendd.data.checksums import set_trusted
    from gendd.errors import GenddError

    info = dataset_info(name)
    source = info.find(data_root)
    if trust_archive:
        if not source.is_file():
            raise GenddError(f"{source}: --trust-archive applies to an archive, this is a folder")
        set_trusted(source)
    t0 = time.perf_counter()
    try:
        ds = info.load(source)
    except GenddError:
        if trust_archive:
            set_trusted(source, False)  # accept only an archive that reads completely
        raise
    seconds = time.perf_counter() - t0
    train = torch.bincount(ds.train_labels, minlength=ds.num_classes).tolist()
    test = torch.bincount(ds.test_labels, minlength=ds.num_classes).tolist()
    c, (h, w) = ds.channels, ds.image_size
    click.echo(f"{ds.name}: {source}{' (archive)' if source.is_file() else ''}, read in "
               f"{seconds:.1f} s")
    click.echo(f"{ds.num_classes} classes, {c}x{h}x{w}, train {len(ds.train_labels)}, "
               f"test {len(ds.test_labels)}")
    width = max(len("class"), *(len(n) for n in ds.class_names))
    click.echo(f"{'class'.ljust(width)}  {'train':>6}  {'test':>6}")
    for n, a, b in zip(ds.class_names, train, test):
        click.echo(f"{n.ljust(width)}  {a:>6}  {b:>6}")


def _download(name, data_root, mirror, extract) -> None:
    from gendd.data import dataset_info, download_dataset
    from gendd.data.archives import safe_extract
    from gendd.errors import GenddError

    folder = download_dataset(name, data_root, mirror)
    click.echo(f"downloaded {dataset_info(name).name} into {folder} (checksums verified)")
    if extract:
        archive = dataset_info(name).archive
        if not archive:
            raise GenddError(f"{name}: its files are not an archive; nothing to extract")
        safe_extract(folder / archive, folder)
        click.echo(f"extracted {archive} into {folder}")


@main.command("datasets")
@data_root_option
@click.option("--check", "check", metavar="NAME", default=None,
              help="Read data set NAME fully and print its counts per split and class.")
@click.option("--download", "download", metavar="NAME", default=None,
              help="Fetch NAME's official files into DATA_ROOT/<name>/ (or $GENDD_DATA/<name>/): "
                   "checksum verified, resumable, atomic.")
@click.option("--mirror", metavar="URL", default=None,
              help="With --download: fetch URL/<file name> instead of the official address.")
@click.option("--extract", is_flag=True,
              help="With --download: also extract the archive (safely) beside it. Not needed: "
                   "archives are read in place.")
@click.option("--trust-archive", is_flag=True,
              help="With --check: accept this archive although its md5 is not the official "
                   "one (a re-packed copy), if it reads completely.")
def datasets_cmd(data_root, check, download, mirror, extract, trust_archive):
    """List the known data sets and where each was found (--data-root, $GENDD_DATA/<name>,
    system folders), or how to get it; check or download one."""
    from gendd.errors import GenddError

    if (mirror or extract) and not download:
        raise GenddError("--mirror and --extract go with --download NAME")
    if trust_archive and not check:
        raise GenddError("--trust-archive goes with --check NAME")
    if download:
        _download(download, data_root, mirror, extract)
    if check:
        _check(check, data_root, trust_archive)
    if not (check or download):
        _list(data_root)

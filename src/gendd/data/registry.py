"""Known data sets: their shapes, class names, normalisation and where to find them.

A data set is looked for, in order, in `--data-root` (the folder itself or its sub-folder named
like the data set), in `$GENDD_DATA/<folder>`, then in system locations (Debian's package
for Fashion-MNIST). In each of those folders it is found as its own files, as the folder its
official archive extracts to (e.g. `cifar-10-batches-py/`), or as that archive itself (read in
place, checksum verified). `imagefolder` is read from `--data-root` only. New loaders
register a `DatasetInfo` in `DATASETS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gendd.data import cifar, imagefolder, tiny_imagenet
from gendd.data.base import ImageDataset
from gendd.data.checksums import OFFICIAL_MD5
from gendd.data.download import download
from gendd.data.mnist import SPLIT_FILES, load_idx_dataset
from gendd.errors import GenddError

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Remote:
    """One file `--download` fetches: its name on disk, official URL and md5."""
    file: str
    url: str
    md5: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int | None  # None: known only once read (imagefolder)
    channels: int | None
    image_size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str  # sub-folder name under a data root ('' = only --data-root itself)
    marker: str  # a file or folder whose presence identifies the data set in a folder
    load: Callable[[Path], ImageDataset]
    how_to_get: str
    system_dirs: tuple[str, ...] = field(default=())
    extracted: str = ""  # the folder the official archive extracts to
    archive: str = ""  # the official archive's file name
    remote: tuple[Remote, ...] = ()  # what --download fetches into <root>/<folder>

    def candidates(self, data_root: str | os.PathLike | None) -> list[Path]:
        dirs: list[Path] = []
        if data_root is not None:
            dirs.append(Path(data_root))
            if self.folder:
                dirs.append(Path(data_root) / self.folder)
        if self.folder and os.environ.get("GENDD_DATA"):
            dirs.append(Path(os.environ["GENDD_DATA"]) / self.folder)
        dirs += [Path(d) for d in self.system_dirs]
        return dirs

    def locate(self, data_root: str | os.PathLike | None = None) -> Path | None:
        """The data set's folder, or its official archive, or None."""
        for d in self.candidates(data_root):
            for base in (d, d / self.extracted) if self.extracted else (d,):
                if (base / self.marker).exists() or (base / (self.marker + ".gz")).exists():
                    return base
            if self.archive and (d / self.archive).is_file():
                return d / self.archive
        return None

    def find(self, data_root: str | os.PathLike | None = None) -> Path:
        """`locate`, or a one-line error saying where it looked and how to get the data."""
        found = self.locate(data_root)
        if found is None:
            where = ", ".join(str(d) for d in self.candidates(data_root)) or "nowhere"
            raise GenddError(f"{self.name} not found (looked in {where}): {self.how_to_get}")
        return found


def _idx_info(name, classes, mean, std, folder, how, remote, system_dirs=()) -> DatasetInfo:
    return DatasetInfo(
        name=name, num_classes=10, channels=1, image_size=(28, 28), mean=mean, std=std,
        folder=folder, marker=SPLIT_FILES["train"][0],
        load=lambda root: load_idx_dataset(name, root, classes, mean, std),
        how_to_get=how, system_dirs=system_dirs, remote=remote)


def _idx_remote(base_url: str, md5s: tuple[str, str, str, str]) -> tuple[Remote, ...]:
    files = [f + ".gz" for pair in SPLIT_FILES.values() for f in pair]
    return tuple(Remote(f, base_url + f, m) for f, m in zip(files, md5s))


def _cifar_info(name, layout: cifar.CifarLayout, mean, std) -> DatasetInfo:
    return DatasetInfo(
        name=name, num_classes=layout.num_classes, channels=3, image_size=(32, 32), mean=mean,
        std=std, folder=name, marker=layout.meta, extracted=layout.folder,
        archive=layout.archive,
        load=lambda source: cifar.load_cifar(name, source, layout, mean, std),
        how_to_get=f"pass --data-root DIR holding {layout.archive} or its extracted "
                   f"{layout.folder}/ (or run `gendd datasets --download {name}`)",
        remote=(Remote(layout.archive, f"https://www.cs.toronto.edu/~kriz/{layout.archive}",
                       OFFICIAL_MD5[layout.archive]),))


TINY_MEAN, TINY_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": _idx_info(
        "fashion-mnist", FASHION_CLASSES, (0.2860,), (0.3530,), "fashion-mnist",
        "install it with `apt-get install dataset-fashion-mnist` or pass --data-root DIR "
        "holding train-images-idx3-ubyte.gz and the other three IDX files",
        _idx_remote("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                     "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        system_dirs=("/usr/share/datasets/fashion-mnist",)),
    "mnist": _idx_info(
        "mnist", DIGIT_CLASSES, (0.1307,), (0.3081,), "mnist",
        "pass --data-root DIR holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or run "
        "`gendd datasets --download mnist`)",
        # The original site no longer serves the files reliably; this is the copy PyTorch uses.
        _idx_remote("https://ossci-datasets.s3.amazonaws.com/mnist/",
                    ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                     "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
    "cifar-10": _cifar_info("cifar-10", cifar.CIFAR10, (0.4914, 0.4822, 0.4465),
                            (0.2023, 0.1994, 0.2010)),
    "cifar-100": _cifar_info("cifar-100", cifar.CIFAR100, (0.5071, 0.4866, 0.4409),
                             (0.2673, 0.2564, 0.2762)),
    "tiny-imagenet": DatasetInfo(
        name="tiny-imagenet", num_classes=200, channels=3, image_size=(64, 64), mean=TINY_MEAN,
        std=TINY_STD, folder="tiny-imagenet", marker="wnids.txt",
        extracted=tiny_imagenet.FOLDER, archive=tiny_imagenet.ARCHIVE,
        load=lambda source: tiny_imagenet.load_tiny_imagenet("tiny-imagenet", source,
                                                             TINY_MEAN, TINY_STD),
        how_to_get=f"pass --data-root DIR holding {tiny_imagenet.ARCHIVE} or its extracted "
                   f"{tiny_imagenet.FOLDER}/ (or run `gendd datasets --download tiny-imagenet`)",
        remote=(Remote(tiny_imagenet.ARCHIVE, f"http://cs231n.stanford.edu/{tiny_imagenet.ARCHIVE}",
                       OFFICIAL_MD5[tiny_imagenet.ARCHIVE]),)),
}

ALIASES = {"cifar10": "cifar-10", "cifar100": "cifar-100", "tinyimagenet": "tiny-imagenet",
           "tiny-imagenet-200": "tiny-imagenet", "fashionmnist": "fashion-mnist",
           "image-folder": imagefolder.NAME}


def imagefolder_info(opts: imagefolder.FolderOptions) -> DatasetInfo:
    text = imagefolder.format_options(opts)
    name = f"{imagefolder.NAME}:{text}" if text else imagefolder.NAME
    return DatasetInfo(
        name=name, num_classes=None, channels=None, image_size=opts.size,
        mean=(0.5,), std=(0.5,),  # broadcast over any number of channels
        folder="", marker="",
        load=lambda root: imagefolder.load_imagefolder(name, root, opts),
        how_to_get="pass --data-root DIR with one sub-folder of images per class "
                   "(DIR/<class>/*.png|jpg, or DIR/train/<class>/ and DIR/test/<class>/)")


DATASETS[imagefolder.NAME] = imagefolder_info(imagefolder.FolderOptions())


def dataset_info(name: str) -> DatasetInfo:
    """The data set called `name`; image folders take options: 'imagefolder:size=32,mode=RGB'."""
    base, colon, options = name.partition(":")
    key = base.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise GenddError(f"unknown data set '{name}' (known: {', '.join(sorted(DATASETS))})")
    if key == imagefolder.NAME:
        return imagefolder_info(imagefolder.parse_options(options))
    if colon:
        raise GenddError(f"data set '{key}' takes no options (got '{name}')")
    return DATASETS[key]


def load_dataset(name: str, data_root: str | os.PathLike | None = None) -> ImageDataset:
    """Find and read a data set fully into memory, or fail with a one-line GenddError."""
    info = dataset_info(name)
    return info.load(info.find(data_root))


def download_dataset(name: str, data_root: str | os.PathLike | None = None,
                     mirror: str | None = None) -> Path:
    """Fetch the official files of a data set into `<data_root or $GENDD_DATA>/<folder>/`
    (from `mirror`/<file> instead of the official URLs if given) and return that folder."""
    info = dataset_info(name)
    if not info.remote:
        raise GenddError(f"{info.name} cannot be downloaded: {info.how_to_get}")
    base = data_root or os.environ.get("GENDD_DATA")
    if not base:
        raise GenddError("say where to put the download: --data-root DIR, or set GENDD_DATA")
    folder = Path(base) / info.folder
    for r in info.remote:
        url = f"{mirror.rstrip('/')}/{r.file}" if mirror else r.url
        download(url, folder / r.file, r.md5)
    return folder

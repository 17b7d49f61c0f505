"""Writers of small data sets in the exact formats they are distributed in, for the data tests.

CIFAR batches are pickled as the originals were (Python 2, protocol 2): strings as BINSTRING,
arrays through `numpy.core.multiarray._reconstruct`, `numpy.ndarray` and `numpy.dtype`.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_RECONSTRUCT = np.empty(0).__reduce__()[0]


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote it: all strings (bytes, and str such as numpy's
    dtype codes) are py2 `str`, i.e. BINSTRING."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:  # the module name numpy 1.x (and the real files) use
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """N x 3072 uint8 rows (R plane, G plane, B plane): a colour per class, plus noise."""
    rng = np.random.default_rng(seed)
    base = np.stack([(labels * 37) % 256, (labels * 91) % 256, (labels * 151) % 256], 1)
    img = base[:, :, None].repeat(1024, 2) + rng.integers(0, 30, (len(labels), 3, 1024))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def cifar_files(kind: str, classes: int = 10, train_per_class: int = 4, test_per_class: int = 2,
                seed: int = 0) -> dict[str, bytes]:
    """The files of `cifar-10-batches-py/` or `cifar-100-python/` (name -> bytes)."""
    rng = np.random.default_rng(seed)

    def batch(per_class, label_key, name):
        y = rng.permutation(np.repeat(np.arange(classes), per_class))
        d = {b"batch_label": name.encode(), label_key: [int(v) for v in y],
             b"data": cifar_images(y, seed), b"filenames": [b"img_%d.png" % i for i in range(len(y))]}
        if kind == "cifar-100":
            d[b"coarse_labels"] = [int(v) // 5 for v in y]
        return py2_pickle(d)

    names = [b"class_%d" % k for k in range(classes)]
    if kind == "cifar-10":
        files = {f"data_batch_{i}": batch(train_per_class, b"labels", f"training batch {i} of 5")
                 for i in range(1, 6)}
        files["test_batch"] = batch(test_per_class, b"labels", "testing batch 1 of 1")
        files["batches.meta"] = py2_pickle({b"num_cases_per_batch": 10000, b"label_names": names,
                                            b"num_vis": 3072})
    else:
        files = {"train": batch(train_per_class, b"fine_labels", "training batch 1 of 1"),
                 "test": batch(test_per_class, b"fine_labels", "testing batch 1 of 1"),
                 "meta": py2_pickle({b"fine_label_names": names,
                                     b"coarse_label_names": [b"super_%d" % k for k in range(20)]})}
    return files


CIFAR_FOLDER = {"cifar-10": "cifar-10-batches-py", "cifar-100": "cifar-100-python"}
CIFAR_ARCHIVE = {"cifar-10": "cifar-10-python.tar.gz", "cifar-100": "cifar-100-python.tar.gz"}


def write_cifar_folder(parent: Path, kind: str = "cifar-10", **kw) -> Path:
    folder = parent / CIFAR_FOLDER[kind]
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in cifar_files(kind, **kw).items():
        (folder / name).write_bytes(data)
    return folder


def write_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz with a folder entry per top folder and the given files, like `tar czf`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for top in sorted({m.split("/")[0] for m in members if "/" in m}):
            info = tarfile.TarInfo(top)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar_archive(parent: Path, kind: str = "cifar-10", **kw) -> Path:
    files = cifar_files(kind, **kw)
    return write_tar_gz(parent / CIFAR_ARCHIVE[kind],
                        {f"{CIFAR_FOLDER[kind]}/{n}": d for n, d in files.items()})


def jpeg_bytes(color, size=(64, 64), mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    arr = np.clip(np.asarray(color, np.int16) + rng.integers(-20, 20, shape), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), mode).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(color, size=(32, 32), mode="RGB") -> bytes:
    shape = (size[0], size[1], len(mode)) if len(mode) > 1 else size
    buf = io.BytesIO()
    Image.fromarray(np.full(shape, color, np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


def tiny_imagenet_files(classes: int = 3, train_per_class: int = 4, val_per_class: int = 2,
                        size=(64, 64)) -> dict[str, bytes]:
    """The files of `tiny-imagenet-200/` (relative name -> bytes), with `classes` wnids."""
    wnids = [f"n{1000 + 7 * k:08d}" for k in range(classes)][::-1]  # listed unsorted, as there
    files = {"wnids.txt": "".join(w + "\n" for w in wnids).encode(),
             "words.txt": "".join(f"{w}\tthing {k}, other name\n"
                                  for k, w in enumerate(sorted(wnids))).encode()}
    colors = {w: (40 * k % 256, 255 - 40 * k % 256, 90) for k, w in enumerate(sorted(wnids))}
    for w in wnids:
        boxes = ""
        for i in range(train_per_class):
            files[f"train/{w}/images/{w}_{i}.JPEG"] = jpeg_bytes(colors[w], size, seed=i)
            boxes += f"{w}_{i}.JPEG\t0\t0\t63\t63\n"
        files[f"train/{w}/{w}_boxes.txt"] = boxes.encode()
    annotations = ""
    for i in range(val_per_class * classes):
        w = sorted(wnids)[i % classes]
        files[f"val/images/val_{i}.JPEG"] = jpeg_bytes(colors[w], size, seed=100 + i)
        annotations += f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\n"
    files["val/val_annotations.txt"] = annotations.encode()
    files["test/images/test_0.JPEG"] = jpeg_bytes((0, 0, 0), size)
    return files


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture(autouse=True)
def data_env(tmp_path, monkeypatch):
    """Import into a test module: its tests get their own data cache and no data env vars."""
    monkeypatch.setenv("GENDD_CACHE", str(tmp_path / "gendd-cache"))
    for var in ("GENDD_DATA", "GENDD_DATA_ROOT"):
        monkeypatch.delenv(var, raising=False)


def gendd(*args):
    from click.testing import CliRunner

    from gendd.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, *texts):
    """Exit code 2 and exactly one line of output, holding each of `texts`."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for text in texts:
        assert text in lines[0], result.output
    return lines[0]

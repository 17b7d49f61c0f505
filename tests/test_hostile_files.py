"""Hostile and degenerate inputs (issue 38): every probe that once ended in a traceback, a huge
allocation, a read outside the data folder or a silently wrong result is a one-line error
here, or the right result.

Memory bounds are measured with tracemalloc, which sees numpy's and Python's allocations."""

import gzip
import os
import pickle
import socket
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from data_writers import (assert_user_error, cifar_files, data_env, gendd, png_bytes,  # noqa: F401
                          tiny_imagenet_files, write_cifar_folder, write_files)
from safetensors.torch import save_file
from test_data_idx import idx_bytes, write_mnist

from gendd.data import load_dataset
from gendd.data.base import MIN_IMAGE_SIZE
from gendd.data.download import download
from gendd.data.safe_pickle import safe_loads
from gendd.data.tree import DirTree
from gendd.errors import GenddError
from gendd.latent_model import LatentModel
from gendd.models.convnet import ConvNet
from gendd.set_writer import StreamingSetWriter
from gendd.sets import DistilledSet, load_set, save_set


def check(name, root):
    return gendd("datasets", "--check", name, "--data-root", root)


def peak_bytes(fn) -> int:
    """The peak of memory allocated while `fn()` runs (it may raise GenddError)."""
    tracemalloc.start()
    try:
        fn()
    except GenddError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# --- Item 2: memory bombs in small files ------------------------------------------------------

def ndarray_call(shape_and_rest: bytes) -> bytes:
    """A protocol-2 CIFAR batch whose b'data' is `numpy.ndarray(<args>)`, no data of its own."""
    return (b"\x80\x02}(C\x04datacnumpy\nndarray\n" + shape_and_rest + b"R"
            + b"C\x06labels]u.")


U1 = b"cnumpy\ndtype\nU\x02u1\x85R"  # numpy.dtype('u1')
BOMBS = {
    # numpy.ndarray((349525, 3072), dtype('u1')): 1.07 GB of images from a 67-byte file.
    "shape only": ndarray_call(b"(J\x55\x55\x05\x00M\x00\x0c\x86" + U1 + b"t"),
    # the same shape as a view of one byte of the file (strides (0, 0)): concatenating the
    # batches would copy it into 1.07 GB.
    "zero strides": ndarray_call(b"(J\x55\x55\x05\x00M\x00\x0c\x86" + U1
                                 + b"C\x01xK\x00K\x00K\x00\x86t"),
}


@pytest.mark.parametrize("kind", BOMBS)
def test_a_tiny_cifar_batch_cannot_ask_for_gigabytes(tmp_path, kind):
    folder = write_cifar_folder(tmp_path, "cifar-10")
    (folder / "data_batch_1").write_bytes(BOMBS[kind])
    assert len(BOMBS[kind]) < 100
    assert_user_error(check("cifar-10", tmp_path), "data_batch_1", "unsafe or corrupt pickle",
                      "more than the file could hold")
    assert peak_bytes(lambda: safe_loads(BOMBS[kind], "x")) < 1 << 20


def test_ndarray_cannot_be_built_through_newobj():
    payload = b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;\x85\x85\x81."
    with pytest.raises(GenddError, match="NEWOBJ class argument must be a type"):
        safe_loads(payload, "x")


def test_a_python3_protocol_2_cifar_pickle_reads_like_the_original(tmp_path):
    originals = cifar_files("cifar-10")
    folder = write_cifar_folder(tmp_path / "py3", "cifar-10")
    for name in originals:
        d = safe_loads(originals[name], name)
        if name == "data_batch_2":  # as pickle.load(f, encoding="latin1") would give it
            d = {k.decode(): v for k, v in d.items()}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))  # bytes via _codecs.encode
    py3 = load_dataset("cifar-10", tmp_path / "py3")
    ref = load_dataset("cifar-10", write_cifar_folder(tmp_path / "ref", "cifar-10").parent)
    assert torch.equal(py3.train_images, ref.train_images) and py3.class_names == ref.class_names
    assert py3.train_images.shape == (200, 3, 32, 32)
    with pytest.raises(GenddError, match="allowed only for latin1 text"):
        safe_loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R.", "x")


def raw_idx(shape, data=b""):
    return struct.pack(">BBBB", 0, 0, 8, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + data


def gzip_bomb(shape, zeros_mib: int) -> bytes:
    """A gzip IDX file with header `shape`, then `zeros_mib` MiB of zeros whatever it says."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container, CRC and all
    parts = [c.compress(raw_idx(shape))]
    parts += [c.compress(bytes(1 << 20)) for _ in range(zeros_mib)]
    return b"".join(parts) + c.flush()


def test_a_gzip_idx_that_inflates_past_its_header_is_refused_early(tmp_path):
    root = write_mnist(tmp_path / "m", train=10)
    bomb = gzip_bomb((10, 28, 28), 64)  # 64 MiB of zeros behind a 10-image header
    assert len(bomb) < 100_000
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(bomb)
    assert_user_error(check("mnist", root), str(path),
                      "IDX data goes on past the 7840 bytes its header says")
    from gendd.data.idx import read_idx

    assert peak_bytes(lambda: read_idx(path)) < 4 << 20


def test_a_gzip_idx_header_promising_more_than_deflate_can_hold(tmp_path):
    root = write_mnist(tmp_path / "m")
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((1, 28, 28)))[:4]
                                   + struct.pack(">3I", 100_000_000, 28, 28)))
    assert_user_error(check("mnist", root), "IDX header says 100000000 x 28 x 28 = 78400000000 "
                      f"bytes, more than a {path.stat().st_size}-byte gzip file can hold")


# --- Item 7: degenerate IDX files -------------------------------------------------------------

@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((0, 28, 28)), np.zeros(0), "no images (the train split needs at least one)"),
    (np.zeros((30, 0, 0)), np.arange(30) % 10, "images are 0x0, gendd needs at least 8x8"),
    (np.zeros((30, 1, 1)), np.arange(30) % 10, "images are 1x1, gendd needs at least 8x8"),
    (np.zeros((30, 7, 28)), np.arange(30) % 10, "images are 7x28, gendd needs at least 8x8"),
])
def test_degenerate_training_images_are_refused(tmp_path, images, labels, message):
    root = write_mnist(tmp_path / "m")
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert_user_error(check("mnist", root), "train-images-idx3-ubyte.gz", message)


@pytest.mark.parametrize("gz, message", [
    (False, "IDX data is 0 bytes, header says 18446744073709551616"),
    (True, "IDX header says 65536 x 65536 x 65536 x 65536 = 18446744073709551616 bytes"),
])
def test_dimensions_whose_product_overflows_64_bits(tmp_path, gz, message):
    root = write_mnist(tmp_path / "m", gz=gz)
    data = raw_idx((65536,) * 4)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (root / name).write_bytes(gzip.compress(data) if gz else data)
    assert_user_error(check("mnist", root), name, message)


def test_an_invalid_deflate_block_is_a_one_line_error(tmp_path):
    root = write_mnist(tmp_path / "m")
    good = gzip.compress(idx_bytes(np.zeros((30, 28, 28))))
    bad = good[:10] + b"\xff" * 8 + good[18:]  # block type 3 (reserved) in the first byte
    (root / "train-images-idx3-ubyte.gz").write_bytes(bad)
    assert_user_error(check("mnist", root), "cannot read IDX file", "invalid block type")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_the_minimum_image_size_is_what_the_evaluators_convnet_needs():
    for channels in (1, 3):
        net = ConvNet(channels, 10, (MIN_IMAGE_SIZE, MIN_IMAGE_SIZE))
        assert net(torch.zeros(2, channels, MIN_IMAGE_SIZE, MIN_IMAGE_SIZE)).shape == (2, 10)
    with pytest.raises(RuntimeError):  # one pixel less: the third pooling has nothing left
        ConvNet(3, 10, (MIN_IMAGE_SIZE - 1,) * 2)(torch.zeros(2, 3, 7, 7))


def test_tiny_images_in_an_image_folder_are_refused(tmp_path):
    write_files(tmp_path, {f"{c}/{i}.png": png_bytes(40 * k, (4, 4))
                           for k, c in enumerate("ab") for i in range(5)})
    assert_user_error(check("imagefolder", tmp_path), "images are 4x4, gendd needs at least 8x8")
    result = check("imagefolder:size=8", tmp_path)
    assert result.exit_code == 0 and "3x8x8, train 8, test 2" in result.output, result.output


# --- Item 8: links that lead nowhere in an image folder ---------------------------------------

def folder_with_bad_links(root):
    write_files(root, {f"{c}/{i}.png": png_bytes(40 * k, (16, 16))
                       for k, c in enumerate("ab") for i in range(5)})
    (root / "a" / "broken.png").symlink_to(root / "nowhere.png")
    (root / "b" / "loop.png").symlink_to(root / "b" / "loop.png")
    return root


def test_broken_and_looping_links_are_skipped_with_bad_skip(tmp_path):
    root = folder_with_bad_links(tmp_path / "f")
    result = check("imagefolder:bad=skip", root)
    assert result.exit_code == 0, result.output
    for name, why in (("a/broken.png", "No such file or directory"),
                      ("b/loop.png", "Too many levels of symbolic links")):
        assert f"skipped {root}/{name}: cannot read file ({why})" in result.output
    assert "2 classes, 3x16x16" in result.output


def test_broken_links_fail_the_load_by_default(tmp_path):
    root = folder_with_bad_links(tmp_path / "f")
    assert_user_error(check("imagefolder", root), f"{root}/a/broken.png: cannot read file "
                      "(No such file or directory); to skip such files pass bad=skip")
    os.unlink(root / "a" / "broken.png")
    assert_user_error(check("imagefolder", root), f"{root}/b/loop.png", "symbolic links")


# --- Item 10: Tiny-ImageNet annotations naming files outside the data folder ------------------

@pytest.mark.parametrize("name", ["../../secret.png", "/SECRET", "..", "sub/../../x.JPEG"])
def test_val_annotations_cannot_name_files_outside_val_images(tmp_path, name):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes((255, 0, 0), (64, 64)))
    name = name.replace("/SECRET", str(secret))
    files = tiny_imagenet_files()
    wnid = sorted(files["wnids.txt"].decode().split())[0]
    files["val/val_annotations.txt"] += f"{name}\t{wnid}\t0\t0\t1\t1\n".encode()
    root = write_files(tmp_path / "data" / "tiny-imagenet-200", files)
    assert_user_error(check("tiny-imagenet", root), "val_annotations.txt: line 7:",
                      f"'{name}' is not a file name in val/images/")


def test_a_dir_tree_reads_nothing_outside_its_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    tree = DirTree(tmp_path / "root")
    for rel in ("../secret", str(tmp_path / "secret"), "a/../../secret"):
        with pytest.raises(GenddError, match="outside this folder"):
            tree.read(rel)
        with pytest.raises(GenddError, match="outside this folder"):
            tree.is_file(rel)


# --- Item 9: run and set files that read but are wrong ----------------------------------------

def fake_run(tmp_path, text: str):
    run = tmp_path / "run"
    for sub in ("autoencoder", "denoiser"):
        (run / sub).mkdir(parents=True)
    (run / "generator.json").write_text(text)
    return run


@pytest.mark.parametrize("text, message", [
    ('{"geometry": {"channels": 1', "unreadable (JSONDecodeError: Expecting"),
    ("[1, 2]", "unreadable (TypeError: list indices must be integers"),
    ('{"geometry": {"channels": 1}}', "unreadable (TypeError: ImageGeometry.__init__() missing"),
    ('{"geometry": {"channels": "1", "height": 28, "width": 28, "pad_to": 4}, '
     '"class_names": ["a"], "prediction_type": "epsilon", "beta_schedule": "linear"}',
     "a value has the wrong type"),
])
def test_a_corrupt_generator_json_is_a_one_line_error(tmp_path, text, message):
    run = fake_run(tmp_path, text)
    with pytest.raises(GenddError) as e:
        LatentModel.load(run)
    assert str(e.value).startswith(f"{run}/generator.json: ") and message in str(e.value)
    assert str(e.value).endswith("the run is damaged (train it again with --force)")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("meta", ["[1, 2]", '"text"', "3"])
def test_a_set_whose_metadata_is_not_an_object_is_refused(tmp_path, meta):
    path = tmp_path / "s.safetensors"
    save_file({"images": torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
               "labels": torch.tensor([0, 1])}, str(path), metadata={"gendd": meta})
    with pytest.raises(GenddError, match="metadata is JSON (list|str|int), not an object"):
        load_set(path)
    assert_user_error(gendd("export", path, "--format", "grid", "--out", tmp_path / "g.png"),
                      str(path), "not an object")
    assert not (tmp_path / "g.png").exists()


# --- Item 11: minor ones ----------------------------------------------------------------------

def test_a_failed_download_names_no_part_file_that_does_not_exist(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GenddError) as e:
        download(f"http://127.0.0.1:{port}/f.gz", tmp_path / "f.gz", "0" * 32, timeout=5)
    assert "nothing received, run the same command again to retry" in str(e.value)
    assert ".part" not in str(e.value) and list(tmp_path.iterdir()) == []


def test_export_to_a_data_set_of_another_shape_is_refused(tmp_path):
    path = tmp_path / "s.safetensors"
    save_set(path, DistilledSet(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1]),
                                {"dataset": "fashion-mnist"}))
    out = tmp_path / "s.pt"
    assert_user_error(gendd("export", path, "--format", "challenge", "--dataset", "cifar-10",
                            "--out", out),
                      "the set's images are 1x28x28, cifar-10's 3x32x32: --dataset must name "
                      "the set's own data set")
    assert not out.exists()
    assert gendd("export", path, "--format", "challenge", "--dataset", "mnist", "--out",
                 out).exit_code == 0


def test_the_spool_of_a_killed_writer_is_removed_by_the_next(tmp_path):
    script = ("import sys, time, torch; from gendd.set_writer import StreamingSetWriter; "
              "w = StreamingSetWriter(sys.argv[1], 2, (1, 8, 8)); "
              "w.add(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), 0); print('ok', flush=True); "
              "time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "a.safetensors")],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ok"
    writer.kill()  # SIGKILL: nothing of the writer's own runs
    writer.wait()
    stale = list(tmp_path.glob(".gendd-spool-*"))
    assert [p.name.split("@")[0] for p in stale] == [f".gendd-spool-{writer.pid}"]
    live = StreamingSetWriter(tmp_path / "b.safetensors", 2, (1, 8, 8))  # spools of live ones stay
    w = StreamingSetWriter(tmp_path / "c.safetensors", 2, (1, 8, 8))
    assert sorted(tmp_path.glob(".gendd-spool-*")) == sorted([live._spool, w._spool])
    w.add(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 1)
    w.close({})
    live.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


# --- Item 9: checkpoints that read but are wrong ----------------------------------------------

def toy_training(ckpt_dir, steps=20):
    """A Linear model trained by the real loop (AdamW, EMA, checkpoints every 10 steps)."""
    from accelerate import Accelerator

    from gendd.training_loop import LoopSpec, MetricsLog, train_loop

    torch.manual_seed(0)
    net, x = torch.nn.Linear(4, 2), torch.randn(32, 4, generator=torch.Generator().manual_seed(1))

    def loss_fn(model, idx, rnd):
        return (model(x[idx] + rnd["noise"]) - x[idx, :2]).square().mean()

    spec = LoopSpec("toy", steps, 8, 0.05, 2, ema_decay=0.9, checkpoint_every=10,
                    keep_checkpoints=3, log_every=10)
    model, ema = train_loop(Accelerator(cpu=True), net, spec, 0, 32,
                            lambda g, n: {"noise": 0.1 * torch.randn(n, 4, generator=g)},
                            loss_fn, ckpt_dir, MetricsLog(ckpt_dir / "m.jsonl", enabled=False),
                            progress=False)
    return torch.cat([p.detach().flatten() for p in (*model.parameters(), *ema.parameters())])


TAMPER = {
    "other tensors": lambda d: save_file({"other": torch.zeros(3)}, str(d / "model.safetensors")),
    "other shapes": lambda d: save_file({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)},
                                        str(d / "model.safetensors")),
    "meta.json a list": lambda d: (d / "meta.json").write_text("[1, 2]"),
    "optimiser of other parameters": lambda d: save_file({"0.exp_avg": torch.zeros(7)},
                                                         str(d / "optimizer.safetensors")),
    "no EMA": lambda d: (d / "ema.safetensors").unlink(),
}


@pytest.mark.parametrize("tamper", TAMPER)
def test_a_checkpoint_that_reads_but_is_wrong_falls_back_to_the_previous(tmp_path, capsys, tamper):
    uninterrupted = toy_training(tmp_path / "ref")
    toy_training(tmp_path / "ckpt")
    newest = tmp_path / "ckpt" / "step_00000020"
    TAMPER[tamper](newest)
    capsys.readouterr()
    resumed = toy_training(tmp_path / "ckpt")  # from step 10: the same 20 steps in the end
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gendd: warning: checkpoint {newest}")
    assert lines[0].endswith("; falling back to the previous checkpoint")
    assert torch.equal(resumed, uninterrupted)


def test_when_no_checkpoint_fits_training_starts_over_from_untouched_weights(tmp_path, capsys):
    uninterrupted = toy_training(tmp_path / "ref")
    toy_training(tmp_path / "ckpt")
    for step in (10, 20):
        TAMPER["other shapes"](tmp_path / "ckpt" / f"step_{step:08d}")
    assert torch.equal(toy_training(tmp_path / "ckpt"), uninterrupted)
    assert capsys.readouterr().err.count("falling back") == 2

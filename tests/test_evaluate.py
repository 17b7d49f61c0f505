"""The evaluator: the challenge's constants, its schedule, input checks (one-line errors with
exit code 2), submissions, determinism, and a tiny set that learns."""

import json
import struct
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gendd.augment import DSA_STRATEGY
from gendd.baselines import random_real
from gendd.cli import main
from gendd.data import load_dataset
from gendd.data.base import ImageDataset
from gendd.errors import GenddError
from gendd.evaluate import (Protocol, challenge_protocol, evaluate_set, evaluate_tensors,
                            load_submission, test_accuracy, train_network)
from gendd.models.convnet import ConvNet
from gendd.runtime import compile_enabled
from gendd.sets import DistilledSet, save_set


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GENDD_COMPILE", "0")  # keep the suite quick; compiling is tested apart


def test_challenge_protocol_constants():
    p = challenge_protocol()
    assert (p.model, p.epochs, p.lr, p.momentum, p.weight_decay, p.batch_size, p.rounds) == \
        ("convnet", 1000, 0.01, 0.9, 5e-4, 256, 3)
    assert p.dsa_strategy == DSA_STRATEGY == "color_crop_cutout_flip_scale_rotate"
    assert p.dsa_params.mode == "S"
    # `for ep in range(Epoch + 1)`, lr x0.1 after ep == Epoch // 2 + 1
    assert p.train_passes == 1001 and p.lr_decay_epoch == 501
    assert p.lr_at(0) == p.lr_at(501) == 0.01
    assert p.lr_at(502) == pytest.approx(0.001) and p.lr_at(1000) == pytest.approx(0.001)
    assert challenge_protocol(epochs=300, model="vgg11").model == "vgg11"
    with pytest.raises(GenddError, match="unknown model"):
        challenge_protocol(model="lenet")
    d = p.to_dict()
    assert d["name"] == "eccv2024-challenge" and json.dumps(d)


def test_compiling_is_on_by_default_on_the_cpu_only(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("GENDD_COMPILE", raising=False)
    assert compile_enabled(cpu) and not compile_enabled(gpu)
    monkeypatch.setenv("GENDD_COMPILE", "1")
    assert compile_enabled(cpu) and compile_enabled(gpu)
    monkeypatch.setenv("GENDD_COMPILE", "0")
    assert not compile_enabled(cpu) and not compile_enabled(gpu)


def test_train_network_follows_the_schedule_and_restarts_momentum(monkeypatch):
    made = []
    real_sgd = torch.optim.SGD

    def spy(params, **kw):
        made.append(kw)
        return real_sgd(params, **kw)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    net = ConvNet(1, 2, (8, 8), width=4, depth=1)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1] * 3)
    train_network(net, x, y, Protocol(epochs=4), generator=0, progress=False,
                  device="cpu")
    # lr 0.01 until pass 3 (= 4 // 2 + 1), then a new optimiser at 0.001
    assert [kw["lr"] for kw in made] == [0.01, pytest.approx(0.001)]
    assert all(kw["momentum"] == 0.9 and kw["weight_decay"] == 5e-4 for kw in made)


def _tiny_dataset(n_train=40, n_test=60, classes=4, size=8, seed=0, signal=150):
    g = torch.Generator().manual_seed(seed)
    ty = torch.arange(n_train) % classes
    vy = torch.arange(n_test) % classes
    # class c is brighter in quadrant c: learnable in a few epochs
    def images(labels):
        x = torch.randint(0, 80, (len(labels), 1, size, size), generator=g, dtype=torch.uint8)
        h = size // 2
        for i, c in enumerate(labels.tolist()):
            r, q = divmod(c, 2)
            x[i, 0, r * h:(r + 1) * h, q * h:(q + 1) * h] += signal
        return x
    return ImageDataset("tiny", tuple(f"c{i}" for i in range(classes)), images(ty), ty,
                        images(vy), vy, (0.3,), (0.3,))


def test_evaluate_is_deterministic_and_reports_the_schema():
    ds = _tiny_dataset(signal=20)
    s = DistilledSet(ds.train_images[:12], ds.train_labels[:12], {"dataset": "tiny"})
    p = challenge_protocol(epochs=1, rounds=2)
    a = evaluate_set(s, ds, p, seed=1, progress=False)
    b = evaluate_set(s, ds, p, seed=1, progress=False)
    assert a["accuracy"] == b["accuracy"]
    assert set(a["accuracy"]) == {"mean", "std", "rounds"} and len(a["accuracy"]["rounds"]) == 2
    assert a["model"] == "convnet" and a["epochs"] == 1 and a["protocol"]["rounds"] == 2
    assert a["counts_per_class"] == [3, 3, 3, 3] and a["flags"] == []
    assert "wall_time_s" in a and json.dumps(a)
    c = evaluate_set(s, ds, p, seed=2, progress=False)
    assert c["accuracy"]["rounds"] != a["accuracy"]["rounds"]


def test_unequal_counts_are_evaluated_but_flagged():
    ds = _tiny_dataset()
    keep = torch.tensor([0, 1, 2, 3, 4, 5, 6])  # classes 0..3, 0..2
    s = DistilledSet(ds.train_images[keep], ds.train_labels[keep])
    r = evaluate_set(s, ds, challenge_protocol(epochs=0, rounds=1), progress=False)
    assert r["flags"] == ["unequal_images_per_class"] and r["counts_per_class"] == [2, 2, 2, 1]


def test_bad_sets_are_user_errors():
    ds = _tiny_dataset()
    p = challenge_protocol(epochs=0, rounds=1)
    x, y = ds.train_images[:8], ds.train_labels[:8]
    cases = {
        "images are 3x8x8": DistilledSet(x.repeat(1, 3, 1, 1), y),
        "images are 1x9x9": DistilledSet(torch.zeros(8, 1, 9, 9, dtype=torch.uint8), y),
        "outside the 4 classes": DistilledSet(x, torch.where(y == 3, 7, y)),
        "no images of class": DistilledSet(x, torch.where(y == 3, 0, y)),
    }
    for msg, s in cases.items():
        with pytest.raises(GenddError, match=msg):
            evaluate_set(s, ds, p, progress=False)
    xf = ds.normalize(x)
    with pytest.raises(GenddError, match="NaN"):
        evaluate_tensors(torch.where(xf > 0, float("nan"), xf), y, ds, p, progress=False)
    with pytest.raises(GenddError, match="outside"):
        evaluate_tensors(xf * 5, y, ds, p, progress=False)


def test_a_tiny_set_learns_above_chance():
    ds = _tiny_dataset(n_train=40, n_test=200)
    torch.manual_seed(0)
    net = ConvNet(1, 4, (8, 8), width=16, depth=2)
    p = challenge_protocol(epochs=30)
    net = train_network(net, ds.normalize(ds.train_images), ds.train_labels, p, 0, False, "cpu")
    assert test_accuracy(net, ds.normalize(ds.test_images), ds.test_labels) > 60.0


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)")
def test_real_fashion_mnist_ipc10_learns_above_chance():
    ds = load_dataset("fashion-mnist").subset(test_count=500, seed=0)  # a loader error fails
    r = evaluate_set(random_real(ds, 10, 0), ds, challenge_protocol(epochs=5, rounds=1),
                     progress=False)
    assert r["accuracy"]["mean"] > 35.0  # chance is 10 %


# --- the command line, on a tiny fake Fashion-MNIST written in the real IDX format -----------


def _write_idx(path, array):
    dims = array.shape
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
        f.write(array.numpy().astype("uint8").tobytes())


@pytest.fixture
def fake_root(tmp_path):
    ds = _tiny_dataset(n_train=60, n_test=30, classes=10, size=28)
    root = tmp_path / "fmnist"
    root.mkdir()
    _write_idx(root / "train-images-idx3-ubyte", ds.train_images[:, 0])
    _write_idx(root / "train-labels-idx1-ubyte", ds.train_labels)
    _write_idx(root / "t10k-images-idx3-ubyte", ds.test_images[:, 0])
    _write_idx(root / "t10k-labels-idx1-ubyte", ds.test_labels)
    return root


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _one_line_error(res, fragment):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], res.output


def test_cli_evaluates_a_set_and_a_submission(fake_root, tmp_path):
    ds = load_dataset("fashion-mnist", fake_root)
    s = random_real(ds, 2, 0)
    save_set(tmp_path / "s.safetensors", s)
    out = tmp_path / "r.json"
    base = ["--dataset", "fashion-mnist", "--data-root", str(fake_root), "--epochs", "1",
            "--rounds", "2", "-q"]
    res = _run(["evaluate", str(tmp_path / "s.safetensors"), *base, "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    assert "±" in res.output
    r = json.loads(out.read_text())
    assert len(r["accuracy"]["rounds"]) == 2 and r["epochs"] == 1
    # the same images as a challenge submission: normalised floats, ordered by class
    torch.save(ds.normalize(s.images), tmp_path / "sub.pt")
    res = _run(["evaluate", str(tmp_path / "sub.pt"), *base, "--json-out", str(out)])
    assert res.exit_code == 2 and "r.json: exists (use --force" in res.output  # kept
    assert json.loads(out.read_text())["source"]["kind"] == "set"
    res = _run(["evaluate", str(tmp_path / "sub.pt"), *base, "--json-out", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["source"]["kind"] == "submission"


def test_submission_labels_are_implicit(tmp_path):
    ds = _tiny_dataset()
    torch.save(torch.zeros(8, 1, 8, 8), tmp_path / "a.pt")
    x, y = load_submission(tmp_path / "a.pt", ds)
    assert y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_cli_bad_inputs_are_one_line_errors(fake_root, tmp_path):
    ds = load_dataset("fashion-mnist", fake_root)
    base = ["--dataset", "fashion-mnist", "--data-root", str(fake_root), "--epochs", "0",
            "--rounds", "1", "-q"]
    x, y = ds.train_images[:20], ds.train_labels[:20]
    bad_sets = {
        "rgb.safetensors": (DistilledSet(x.repeat(1, 3, 1, 1), y), "images are 3x28x28"),
        "small.safetensors": (DistilledSet(x[:, :, :16, :16].contiguous(), y), "1x16x16"),
        "labels.safetensors": (DistilledSet(x, torch.where(y == 9, 12, y)), "outside the 10"),
        "missing.safetensors": (DistilledSet(x, torch.where(y == 9, 0, y)), "no images of class"),
    }
    for name, (s, fragment) in bad_sets.items():
        save_set(tmp_path / name, s)
        _one_line_error(_run(["evaluate", str(tmp_path / name), *base]), fragment)
    torch.save(ds.normalize(x)[:15], tmp_path / "odd.pt")
    _one_line_error(_run(["evaluate", str(tmp_path / "odd.pt"), *base]), "not a multiple")
    nan = ds.normalize(x)
    nan[3, 0, 4, 4] = float("nan")
    torch.save(nan, tmp_path / "nan.pt")
    _one_line_error(_run(["evaluate", str(tmp_path / "nan.pt"), *base]), "NaN")
    torch.save(ds.normalize(x) * 10, tmp_path / "range.pt")
    _one_line_error(_run(["evaluate", str(tmp_path / "range.pt"), *base]), "outside [0, 1]")
    (tmp_path / "junk.pt").write_bytes(b"not a tensor")
    _one_line_error(_run(["evaluate", str(tmp_path / "junk.pt"), *base]), "not a readable")
    save_set(tmp_path / "ok.safetensors", DistilledSet(x, y))
    _one_line_error(_run(["evaluate", str(tmp_path / "ok.safetensors"), *base,
                          "--model", "alexnet9"]), "unknown model")

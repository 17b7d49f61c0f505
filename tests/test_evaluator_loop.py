"""The evaluator's training loop, watched from the outside (issue 38): spies on DSA, the
optimiser and the network's forward assert what `train_network` actually does (epochs + 1
passes, batches of 256 with the last one kept, the lr switch after pass epochs // 2 + 1 with a
fresh optimiser, DSA on every training batch), that the score is taken on the whole test set,
that `gendd evaluate` with no --epochs/--rounds runs the challenge's 1000 epochs and 3 rounds,
and that a challenge `.pt` whose pickle would run code is refused with nothing executed.

Only the public evaluator API is used; the spies are monkeypatched, nothing in src/ is
changed for them."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import shlex

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import gendd.evaluate
from gendd.baselines import random_real
from gendd.cli import main
from gendd.data import load_dataset
from gendd.data.base import ImageDataset
from gendd.errors import GenddError
from gendd.evaluate import Protocol, challenge_protocol, evaluate_tensors, load_submission, \
    train_network
from gendd.models.convnet import ConvNet
from gendd.runtime import autocast, autocast_dtype
from gendd.sets import save_set


@pytest.fixture(autouse=True)
def _eager_one_thread(monkeypatch):
    # Spies wrap the eager forward; the compiled path is the same function, tested elsewhere.
    monkeypatch.setenv("GENDD_COMPILE", "0")
    # The networks here are tiny: a second thread buys nothing, and on a busy 2-core machine
    # its barriers made the 3 x 1001 passes of the CLI test ten times slower (108 s against
    # 11 s for one round of them).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Spy:
    """One ordered log of what the evaluator does: DSA calls (which images went in), network
    forwards (what came in, train or eval mode), optimisers made and their steps."""

    def __init__(self, monkeypatch, dsa_passthrough: bool = True):
        self.events: list[tuple] = []
        self.optimisers: list[torch.optim.Optimizer] = []
        real_dsa = gendd.evaluate.dsa
        real_sgd = torch.optim.SGD
        spy = self

        def dsa(x, generator, *args, **kwargs):
            out = real_dsa(x, generator, *args, **kwargs) if dsa_passthrough else x.clone()
            spy.events.append(("dsa", x.detach().clone(), out))
            return out

        def sgd(params, **kwargs):
            opt = real_sgd(params, **kwargs)
            index = len(spy.optimisers)
            spy.optimisers.append(opt)
            spy.events.append(("sgd", index, dict(kwargs)))
            real_step = opt.step

            def step(*a, **kw):
                spy.events.append(("step", index, opt.param_groups[0]["lr"],
                                   opt.param_groups[0]["momentum"], len(opt.state) == 0))
                return real_step(*a, **kw)

            opt.step = step
            return opt

        monkeypatch.setattr(gendd.evaluate, "dsa", dsa)
        monkeypatch.setattr(torch.optim, "SGD", sgd)

    def watch(self, net: nn.Module) -> nn.Module:
        real_forward = net.forward
        spy = self

        def forward(x):
            spy.events.append(("forward", x, net.training))
            return real_forward(x)

        net.forward = forward
        return net

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]


def _tagged_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """n random normalised images whose pixel (0, 0) is the image's index: a spy can tell from
    a batch which images it holds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    return x


def _ids(batch: torch.Tensor) -> list[int]:
    return batch[:, 0, 0, 0].round().long().tolist()


# ---------------------------------------------------------------------------------------------
# train_network


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("epochs, steps_at_high_lr, steps_at_low_lr", [
    (6, 10, 4),  # 7 passes of 2 batches; lr drops after pass 4 (= 6 // 2 + 1): 5 passes at 0.01
    (5, 8, 4),   # 6 passes; after pass 3 (= 5 // 2 + 1): 4 passes at 0.01, 2 at 0.001
])
def test_train_network_passes_batches_lr_switch_and_dsa(monkeypatch, fast, epochs,
                                                        steps_at_high_lr, steps_at_low_lr):
    spy = Spy(monkeypatch)
    n = 300  # batches of 256 + 44: the last, partial batch is kept
    x, y = _tagged_images(n), torch.arange(n) % 2
    net = spy.watch(ConvNet(1, 2, (8, 8), width=4, depth=1))
    train_network(net, x, y, Protocol(epochs=epochs, fast=fast), generator=0, progress=False,
                  device="cpu")

    # epochs + 1 passes, each a shuffled partition of the whole set in batches of 256 and 44
    dsa_calls = spy.of("dsa")
    assert [len(e[1]) for e in dsa_calls] == [256, 44] * (epochs + 1)
    orders = []
    for p in range(epochs + 1):
        ids = _ids(dsa_calls[2 * p][1]) + _ids(dsa_calls[2 * p + 1][1])
        assert sorted(ids) == list(range(n)), f"pass {p} does not visit every image once"
        orders.append(ids)
    assert len({tuple(o) for o in orders}) == epochs + 1  # reshuffled every pass
    assert orders[0] != list(range(n))

    # DSA on every training batch: the network is fed exactly what DSA returned, in train mode,
    # and the augmentation changed the images
    forwards = spy.of("forward")
    assert len(forwards) == len(dsa_calls) == 2 * (epochs + 1)
    for (_, x_in, x_aug), (_, x_net, training) in zip(dsa_calls, forwards):
        assert training and (x_net is x_aug or torch.equal(x_net, x_aug))
    assert sum(not torch.equal(a, b) for _, a, b in dsa_calls) >= len(dsa_calls) - 2

    # One optimiser step per batch; lr 0.01 up to and including pass epochs // 2 + 1, then a
    # new optimiser (its momentum state empty at its first step) at 0.001
    made = spy.of("sgd")
    assert [(e[1], e[2]["lr"], e[2]["momentum"], e[2]["weight_decay"]) for e in made] == \
        [(0, 0.01, 0.9, 5e-4), (1, pytest.approx(0.001), 0.9, 5e-4)]
    steps = spy.of("step")
    assert len(steps) == steps_at_high_lr + steps_at_low_lr == 2 * (epochs + 1)
    assert [(s[1], s[2]) for s in steps] == \
        [(0, 0.01)] * steps_at_high_lr + [(1, pytest.approx(0.001))] * steps_at_low_lr
    assert all(s[3] == 0.9 for s in steps)
    first_of = {i: next(s for s in steps if s[1] == i) for i in (0, 1)}
    assert first_of[0][4] and first_of[1][4], "each optimiser starts without momentum"
    assert not any(s[4] for s in steps if s is not first_of[0] and s is not first_of[1])
    # the second optimiser is made right after the last step of pass epochs // 2 + 1
    kinds = [e[0] for e in spy.events if e[0] in ("sgd", "step")]
    assert kinds == ["sgd"] + ["step"] * steps_at_high_lr + ["sgd"] + ["step"] * steps_at_low_lr
    # and it optimises the same parameters
    assert [id(p) for g in spy.optimisers[1].param_groups for p in g["params"]] == \
        [id(p) for p in net.parameters()]


@pytest.mark.parametrize("epochs, optimisers, steps", [(0, 1, 1), (1, 2, 2)])
def test_train_network_short_schedules(monkeypatch, epochs, optimisers, steps):
    """epochs 0: one pass, no switch; epochs 1: two passes at 0.01, the optimiser re-made after
    the last one (pass 1 = 1 // 2 + 1) and never stepped."""
    spy = Spy(monkeypatch)
    net = spy.watch(ConvNet(1, 2, (8, 8), width=4, depth=1))
    train_network(net, _tagged_images(10), torch.arange(10) % 2, Protocol(epochs=epochs),
                  generator=1, progress=False, device="cpu")
    assert len(spy.of("dsa")) == len(spy.of("forward")) == steps
    assert len(spy.of("sgd")) == optimisers
    assert [(s[1], s[2]) for s in spy.of("step")] == [(0, 0.01)] * steps


def test_a_batch_larger_than_the_set_is_one_batch_and_batches_follow_the_protocol(monkeypatch):
    spy = Spy(monkeypatch)
    net = spy.watch(ConvNet(1, 2, (8, 8), width=4, depth=1))
    train_network(net, _tagged_images(100), torch.arange(100) % 2,
                  challenge_protocol(epochs=2, batch_size=32), generator=0, progress=False,
                  device="cpu")
    assert [len(e[1]) for e in spy.of("dsa")] == [32, 32, 32, 4] * 3
    spy.events.clear()
    train_network(net, _tagged_images(100), torch.arange(100) % 2, Protocol(epochs=2),
                  generator=0, progress=False, device="cpu")
    assert [len(e[1]) for e in spy.of("dsa")] == [100] * 3


# ---------------------------------------------------------------------------------------------
# The score: the whole test set


def _dataset(n_train: int, n_test: int, classes: int = 4, size: int = 8) -> ImageDataset:
    """Up to 4 classes of 8x8 images, learnable but not perfectly in a few epochs."""
    g = torch.Generator().manual_seed(3)
    ty, vy = torch.arange(n_train) % classes, torch.arange(n_test) % classes

    def images(labels):
        x = torch.randint(0, 120, (len(labels), 1, size, size), generator=g, dtype=torch.uint8)
        h = size // 2
        for i, c in enumerate(labels.tolist()):  # a faint brighter quadrant per class
            r, q = divmod(c, 2)
            x[i, 0, r * h:(r + 1) * h, q * h:(q + 1) * h] += 15
        return x

    return ImageDataset("spy", tuple(f"c{i}" for i in range(classes)), images(ty), ty,
                        images(vy), vy, (0.3,), (0.3,))


@pytest.mark.parametrize("fast", [False, True])
def test_the_score_is_the_accuracy_on_the_whole_test_set(monkeypatch, fast):
    # 700 test images: not a multiple of any test batch size. The networks score 40-60 % on
    # them (measured 57.0 and 43.3), so the first batch alone would score otherwise.
    ds = _dataset(n_train=40, n_test=700)
    test_x = ds.normalize(ds.test_images)
    spy = Spy(monkeypatch)
    trained = []
    real_train = gendd.evaluate.train_network

    def train_and_watch(net, *args, **kwargs):
        net = real_train(net, *args, **kwargs)
        trained.append(net)
        return spy.watch(net)

    monkeypatch.setattr(gendd.evaluate, "train_network", train_and_watch)
    p = challenge_protocol(epochs=3, rounds=2, fast=fast)
    result = evaluate_tensors(ds.normalize(ds.train_images), ds.train_labels, ds, p, seed=5,
                              progress=False)
    assert len(trained) == 2 and trained[0] is not trained[1]

    # what the trained networks saw in eval mode: every test image, none left out
    seen = [e[1].cpu() for e in spy.of("forward") if not e[2]]
    seen = torch.cat(seen)
    assert len(seen) >= 2 * len(test_x)
    rows = {tuple(r.flatten().tolist()) for r in seen}
    assert all(tuple(r.flatten().tolist()) in rows for r in test_x)

    # the reported accuracy of each round is that network's accuracy on all 700 test images
    amp = autocast_dtype(torch.device("cpu"), fast)  # bf16 where the CPU has it, as evaluated
    for net, acc in zip(trained, result["accuracy"]["rounds"]):
        net.eval()
        with torch.no_grad(), autocast(torch.device("cpu"), amp):
            pred = torch.cat([net(test_x[i:i + 100]).argmax(1) for i in range(0, 700, 100)])
        expected = 100.0 * float((pred == ds.test_labels).double().mean())
        assert acc == pytest.approx(expected, abs=1e-9)
        assert round(acc * 7) == pytest.approx(acc * 7, abs=1e-6)  # k / 700 of 100 %
    assert result["accuracy"]["mean"] == pytest.approx(sum(result["accuracy"]["rounds"]) / 2)


# ---------------------------------------------------------------------------------------------
# `gendd evaluate` with no --epochs / --rounds: the challenge's 1000 epochs, 3 rounds


class _Linear(nn.Module):
    """A stand-in for the evaluation ConvNet that trains in microseconds."""

    def __init__(self, pixels: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(pixels, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_cli_evaluate_defaults_run_1000_epochs_and_3_rounds(monkeypatch, small_fashion,
                                                            tmp_path):
    ds = load_dataset("fashion-mnist", small_fashion)
    set_path = tmp_path / "s.safetensors"
    save_set(set_path, random_real(ds, 2, 0))  # 20 images: one batch a pass
    spy = Spy(monkeypatch, dsa_passthrough=False)
    calls = []
    real_train = gendd.evaluate.train_network

    def stub(net, images, labels, protocol, generator, progress, device):
        # The real loop, on a linear stand-in for the ConvNet (so 3 x 1001 passes take a
        # second); the ConvNet each round hands in is recorded to check it is a fresh one.
        calls.append({"protocol": protocol, "n": len(labels),
                      "init": [p.detach().clone() for p in net.parameters()]})
        small = _Linear(28 * 28, 10)
        return real_train(small, images, labels, protocol, generator, False, device)

    monkeypatch.setattr(gendd.evaluate, "train_network", stub)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["evaluate", str(set_path), "--dataset", "fashion-mnist",
                                    "--data-root", str(small_fashion), "-q",
                                    "--json-out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output

    assert len(calls) == 3, "3 rounds"
    for c in calls:
        p = c["protocol"]
        assert (p.epochs, p.rounds, p.train_passes, p.lr_decay_epoch, p.batch_size) == \
            (1000, 3, 1001, 501, 256)
        assert (p.model, p.lr, p.momentum, p.weight_decay) == ("convnet", 0.01, 0.9, 5e-4)
        assert c["n"] == 20
    # a freshly initialised network every round
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert not torch.equal(calls[a]["init"][0], calls[b]["init"][0])
    # 3 rounds x 1001 passes, one batch of all 20 images each, each through DSA and a step
    assert len(spy.of("dsa")) == len(spy.of("step")) == 3 * 1001
    assert {len(e[1]) for e in spy.of("dsa")} == {20}
    # per round: 502 steps at 0.01 (passes 0..501), a new optimiser, 499 at 0.001
    lrs = [(s[2], s[4]) for s in spy.of("step")]
    one_round = [(0.01, True)] + [(0.01, False)] * 501 + \
        [(pytest.approx(0.001), True)] + [(pytest.approx(0.001), False)] * 498
    assert lrs == one_round * 3
    assert [e[2]["lr"] for e in spy.of("sgd")] == [0.01, pytest.approx(0.001)] * 3

    r = json.loads(out.read_text())
    assert r["epochs"] == 1000 and len(r["accuracy"]["rounds"]) == 3
    assert r["protocol"]["train_passes"] == 1001 and r["protocol"]["rounds"] == 3
    assert r["protocol"]["lr_decay_epoch"] == 501 and r["protocol"]["batch_size"] == 256
    assert "1000 epochs" in res.output and "over 3 round(s)" in res.output


def test_cli_evaluate_submission_defaults_too(monkeypatch, small_fashion, tmp_path):
    ds = load_dataset("fashion-mnist", small_fashion)
    s = random_real(ds, 1, 0)
    torch.save(ds.normalize(s.images), tmp_path / "sub.pt")
    seen = []

    def stub(net, images, labels, protocol, generator, progress, device):
        seen.append((protocol.epochs, protocol.rounds, labels.tolist()))
        return net  # untrained: the test only needs the protocol it was given

    monkeypatch.setattr(gendd.evaluate, "train_network", stub)
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "sub.pt"), "--dataset",
                                    "fashion-mnist", "--data-root", str(small_fashion), "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert seen == [(1000, 3, list(range(10)))] * 3


# ---------------------------------------------------------------------------------------------
# A malicious challenge submission


class _RunsCommand:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _OpensFile:
    """Unpickling this creates a file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def _write_payloads(tmp_path) -> dict:
    """name -> (file, marker that loading it unsafely creates, how to load it unsafely)."""
    files = {}

    def marker(name):
        return tmp_path / f"{name}.pwned"

    def torch_unsafe(path):
        return torch.load(str(path), weights_only=False)

    def pickle_unsafe(path):
        with open(path, "rb") as f:
            return pickle.load(f)

    m = marker("system")
    torch.save(_RunsCommand(f"touch {shlex.quote(str(m))}"), tmp_path / "system.pt")
    files["system"] = (tmp_path / "system.pt", m, torch_unsafe)
    # the payload beside a valid tensor, as a real-looking submission would carry it
    m = marker("beside")
    torch.save((torch.zeros(10, 1, 28, 28), _RunsCommand(f"touch {shlex.quote(str(m))}")),
               tmp_path / "beside.pt")
    files["beside"] = (tmp_path / "beside.pt", m, torch_unsafe)
    m = marker("legacy")
    torch.save(_OpensFile(str(m)), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    files["legacy"] = (tmp_path / "legacy.pt", m, torch_unsafe)
    m = marker("pickle")
    with open(tmp_path / "pickle.pt", "wb") as f:
        pickle.dump(_RunsCommand(f"touch {shlex.quote(str(m))}"), f)
    files["pickle"] = (tmp_path / "pickle.pt", m, pickle_unsafe)
    return files


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pt_submission_is_refused_and_nothing_runs(tmp_path, small_fashion):
    ds = load_dataset("fashion-mnist", small_fashion)
    payloads = _write_payloads(tmp_path)
    for name, (path, marker, _) in payloads.items():
        with pytest.raises(GenddError, match="not a readable tensor file") as e:
            load_submission(path, ds)
        assert "\n" not in str(e.value), name
        res = CliRunner().invoke(main, ["evaluate", str(path), "--dataset", "fashion-mnist",
                                        "--data-root", str(small_fashion), "--epochs", "0",
                                        "--rounds", "1", "-q"])
        lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1, (name, res.output)
        assert "not a readable tensor file" in lines[0] and "Traceback" not in res.output
        renamed = path.with_suffix(".bin")  # --submission with any file name
        renamed.write_bytes(path.read_bytes())
        res = CliRunner().invoke(main, ["evaluate", str(renamed), "--submission", "--dataset",
                                        "fashion-mnist", "--data-root", str(small_fashion),
                                        "--epochs", "0", "--rounds", "1", "-q"])
        assert res.exit_code == 2 and "not a readable tensor file" in res.output, res.output
        assert not marker.exists(), f"{name}: the payload ran"
    # The payloads are live: loaded the unsafe way, each one does run (so the refusal above is
    # what kept the marker away, not a dud payload).
    for name, (path, marker, unsafe_load) in payloads.items():
        try:
            unsafe_load(path)
        except Exception:  # noqa: BLE001 - a payload may run and then fail to rebuild a tensor
            pass
        assert marker.exists(), f"{name}: the test's payload is a dud"

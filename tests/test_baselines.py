"""Baselines: shapes, class order, determinism, herding's choice, the CLI (DM: test_refine.py)."""

import pytest
import torch
from click.testing import CliRunner

from gendd.baselines import herding, herding_order, random_real
from gendd.cli import main
from gendd.errors import GenddError
from gendd.sets import load_set
from toy_data import toy_dataset


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GENDD_COMPILE", "0")


def _check_layout(s, ds, ipc):
    assert s.images.dtype == torch.uint8 and s.images.shape == (ipc * 3, 1, 28, 28)
    assert s.labels.tolist() == sorted(s.labels.tolist())  # ordered class by class
    assert torch.bincount(s.labels).tolist() == [ipc] * 3
    assert s.metadata["dataset"] == "toy" and s.metadata["ipc"] == ipc


def test_random_real_takes_real_images_per_class_deterministically():
    ds = toy_dataset()
    s = random_real(ds, 4, seed=3)
    _check_layout(s, ds, 4)
    idx = torch.tensor(s.metadata["train_indices"])
    assert len(set(idx.tolist())) == 12
    assert torch.equal(ds.train_images[idx], s.images) and torch.equal(ds.train_labels[idx],
                                                                       s.labels)
    assert random_real(ds, 4, 3).metadata == s.metadata
    assert random_real(ds, 4, 4).metadata["train_indices"] != s.metadata["train_indices"]
    with pytest.raises(GenddError, match="fewer than --ipc"):
        random_real(ds, 13, 0)


def test_herding_order_tracks_the_mean():
    f = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1.0, 1.0], [-1.0, -1.0], [5.0, 5.0]])
    # the mean is (3, 1): first the closest point, then the one that best restores the mean
    order = herding_order(f, 3).tolist()
    assert order[0] == 2 and len(set(order)) == 3
    mean_err = lambda idx: float(((f[idx].mean(0) - f.mean(0)) ** 2).sum())
    assert mean_err(order[:2]) <= min(mean_err([order[0], j]) for j in range(5) if j != order[0])


def test_herding_set_layout_and_determinism():
    ds = toy_dataset()
    s = herding(ds, 3, seed=0, features="random")
    _check_layout(s, ds, 3)
    assert herding(ds, 3, seed=0, features="random").metadata == s.metadata
    t = herding(ds, 2, seed=0, features="trained", feature_epochs=0, feature_train_per_class=4)
    _check_layout(t, ds, 2)


def test_cli_writes_a_set_and_refuses_to_overwrite(tmp_path, monkeypatch):
    ds = toy_dataset()
    monkeypatch.setattr("gendd.data.load_dataset", lambda name, root=None: ds)
    out = tmp_path / "r.safetensors"
    args = ["baseline", "random", "--dataset", "toy", "--ipc", "2", "--seed", "1",
            "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert load_set(out).labels.tolist() == [0, 0, 1, 1, 2, 2]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--force" in res.output
    assert CliRunner().invoke(main, args + ["--force"]).exit_code == 0


def test_convnet_maps_are_its_block_outputs():
    from gendd.evaluate import challenge_protocol, init_network

    ds = toy_dataset()
    net = init_network(challenge_protocol(), ds, 0).eval()
    x = torch.randn(2, 1, 28, 28)
    flat, maps = net.embed_with_maps(x)
    assert torch.equal(flat, net.embed(x))
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 16, 16), (128, 8, 8), (128, 4, 4)]


def test_cli_refuses_dm_options_for_other_methods(tmp_path, monkeypatch):
    monkeypatch.setattr("gendd.data.load_dataset", lambda name, root=None: toy_dataset())
    res = CliRunner().invoke(main, ["baseline", "random", "--dataset", "toy", "--ipc", "1",
                                    "--out", str(tmp_path / "r.safetensors"),
                                    "--set", "refine.mmd=10"])
    assert res.exit_code == 2 and "options of dm only" in res.output

"""`gendd datasets` and the data sets flowing through the pipeline: the tiny preset distils a
fake 3x32x32 CIFAR-10 end to end; a 3x64x64 Tiny-ImageNet trains with its own geometry."""

import json

import pytest
from data_writers import (data_env, gendd, tiny_imagenet_files, write_cifar_archive,  # noqa: F401
                          write_cifar_folder, write_files)


def test_list_shows_where_each_data_set_was_found(tmp_path, monkeypatch):
    write_cifar_folder(tmp_path / "root", "cifar-100", classes=100, train_per_class=1,
                       test_per_class=1)
    monkeypatch.setenv("GENDD_DATA", str(tmp_path / "env"))
    write_cifar_archive(tmp_path / "env" / "cifar-10", "cifar-10")
    r = gendd("datasets", "--data-root", tmp_path / "root")
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines()[1:]}
    assert set(rows) == {"fashion-mnist", "mnist", "cifar-10", "cifar-100", "tiny-imagenet",
                         "imagefolder"}
    assert str(tmp_path / "root" / "cifar-100-python") in rows["cifar-100"]
    assert rows["cifar-100"].split()[1:3] == ["100", "3x32x32"]
    assert str(tmp_path / "env" / "cifar-10" / "cifar-10-python.tar.gz") + " (archive)" in rows["cifar-10"]
    assert "not found" in rows["tiny-imagenet"] and "--download tiny-imagenet" in rows["tiny-imagenet"]


@pytest.mark.slow
def test_distill_tiny_preset_on_a_fake_cifar10(tmp_path):
    write_cifar_folder(tmp_path / "data", "cifar-10", train_per_class=4, test_per_class=3)
    run = tmp_path / "run"
    r = gendd("distill", "--dataset", "cifar-10", "--data-root", tmp_path / "data", "--ipc", 2,
              "--preset", "tiny", "--out", run, "--set", "autoencoder.steps=4",
              "--set", "denoiser.steps=4", "--set", "eval.epochs=1",
              "--set", "train.fd_every=0")  # no FD tracking: seconds, not minutes
    assert r.exit_code == 0, r.output
    from gendd.sets import load_set

    s = load_set(run / "distilled" / "ipc2.safetensors")
    assert s.images.shape == (20, 3, 32, 32) and s.labels.tolist() == sorted(s.labels.tolist())
    assert s.metadata["dataset"] == "cifar-10" and s.metadata["class_names"][9] == "class_9"
    ev = json.loads((run / "eval" / "ipc2.json").read_text())
    assert 0 <= ev["accuracy"]["mean"] <= 100


@pytest.mark.slow
def test_tiny_imagenet_geometry_flows_into_the_models(tmp_path):
    root = write_files(tmp_path / "tiny-imagenet-200", tiny_imagenet_files(train_per_class=4))
    run = tmp_path / "run"
    r = gendd("train", "--dataset", "tiny-imagenet", "--data-root", root, "--preset", "tiny",
              "--out", run, "--set", "autoencoder.steps=1", "--set", "denoiser.steps=1",
              # FD on 64x64 features (8192-d) costs minutes on a CPU: not tracked here.
              "--set", "train.fd_every=0")
    assert r.exit_code == 0, r.output
    from gendd.latent_model import LatentModel

    model = LatentModel.load(run)
    g = model.geometry
    assert (g.channels, g.height, g.width) == (3, 64, 64) and model.num_classes == 3
    assert model.class_names == ("thing 0", "thing 1", "thing 2")

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from gendd.cli import main
from gendd.data import denormalize
from gendd.sets import DistilledSet, save_set


def make_set(tmp_path):
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([1, 0, 1, 0])
    meta = {"dataset": "fashion-mnist", "class_names": ["T-shirt/top", "Trouser"]}
    save_set(tmp_path / "s.safetensors", DistilledSet(images, labels, meta))
    return images, labels


def test_challenge_export_round_trips_to_the_same_pixels(tmp_path):
    images, labels = make_set(tmp_path)
    r = CliRunner().invoke(main, ["export", str(tmp_path / "s.safetensors"), "--format",
                                  "challenge", "--out", str(tmp_path / "s.pt")])
    assert r.exit_code == 0, r.output
    x = torch.load(tmp_path / "s.pt", weights_only=True)
    order = torch.argsort(labels, stable=True)
    assert x.dtype == torch.float32 and x.shape == (4, 1, 28, 28)
    assert torch.equal(denormalize(x, (0.2860,), (0.3530,)), images[order])


def test_imagefolder_export_writes_pngs_per_class(tmp_path):
    images, labels = make_set(tmp_path)
    r = CliRunner().invoke(main, ["export", str(tmp_path / "s.safetensors"), "--format",
                                  "imagefolder", "--out", str(tmp_path / "folder")])
    assert r.exit_code == 0, r.output
    first = Image.open(tmp_path / "folder" / "Trouser" / "00000.png")
    assert torch.equal(torch.from_numpy(np.array(first)), images[0, 0])  # first of class 1
    assert len(list((tmp_path / "folder" / "T-shirt_top").glob("*.png"))) == 2
    again = CliRunner().invoke(main, ["export", str(tmp_path / "s.safetensors"), "--format",
                                      "grid", "--out", str(tmp_path / "folder")])
    assert again.exit_code == 2 and "is a directory" in again.output

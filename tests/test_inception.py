"""The FID Inception-v3: architecture, pytorch-fid's input convention, its weights file format."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from gendd.errors import GenddError
from gendd.models.inception import FIDInceptionV3, load_fid_inception

# Names and shapes of pytorch-fid's pt_inception-2015-12-05 file (torchvision's Inception3 names,
# no AuxLogits, a 1008-way classifier), spot-checked independently of the module's definition.
KNOWN_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.bn.weight": (448,),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}
# torchvision's Inception-v3 has 27,161,264 parameters; less AuxLogits (3,326,696), plus 8 more
# classes (16,392).
PARAMETERS = 23_850_960


@pytest.fixture(scope="module")
def random_net() -> FIDInceptionV3:
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a round trip shows them
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture(scope="module")
def weights_file(random_net, tmp_path_factory):
    """A random-weights file in the format of pytorch-fid's: torch.save of the state dict."""
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_net.state_dict(), path)
    return path


def weight_names(net) -> set[str]:
    return {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}


def test_layout_is_pytorch_fids(random_net):
    state = random_net.state_dict()
    assert {k: tuple(state[k].shape) for k in KNOWN_SHAPES} == KNOWN_SHAPES
    assert sum(p.numel() for p in random_net.parameters()) == PARAMETERS
    assert len(weight_names(random_net)) == 94 * 5 + 2  # 94 conv+BN units, the classifier
    assert not any(k.startswith("AuxLogits") for k in state)


def test_features_are_2048_dimensional(random_net):
    with torch.inference_mode():  # 75 x 75: the smallest input the network takes
        out = random_net.features(torch.randn(2, 3, 75, 75))
    assert out.shape == (2, 2048) and torch.isfinite(out).all()


def test_input_as_pytorch_fid_prepares_it():
    grey = torch.rand(2, 1, 28, 28)
    x = FIDInceptionV3.prepare(grey)
    assert x.shape == (2, 3, 299, 299)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert x.min() >= -1 and x.max() <= 1
    assert torch.allclose(FIDInceptionV3.prepare(torch.full((1, 3, 32, 32), 0.5)), torch.zeros(1))


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "pth-without-bn-counters"])
def test_weights_file_round_trip(random_net, weights_file, tmp_path, fmt):
    state, path = random_net.state_dict(), weights_file
    if fmt == "safetensors":
        path = tmp_path / "inception.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pth-without-bn-counters":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        path = tmp_path / "weights.pth"
        torch.save(state, path)
    loaded = load_fid_inception(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())


def test_fid_features_of_uint8_images(random_net, weights_file, monkeypatch):
    from gendd.sample_quality import InceptionFeatures

    monkeypatch.setattr("gendd.models.inception.INPUT_SIZE", 75)  # 16x cheaper than 299 on a CPU
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    got = InceptionFeatures(weights_file).embed(images, batch=2)  # two batches
    with torch.inference_mode():
        assert torch.allclose(got, random_net(images.float() / 255), atol=1e-5)
    assert got.shape == (3, 2048)


def tiny_file(tmp_path, state) -> str:
    """A .pth whose tensors are broadcast scalars: the real names and shapes in a few kB."""
    path = tmp_path / "weights.pth"
    torch.save({k: torch.zeros(()).expand(shape) for k, shape in state.items()}, path)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("Mixed_7c.branch_pool.conv.weight"),
     "1 missing.*missing Mixed_7c.branch_pool.conv.weight"),
    (lambda s: s.update({"AuxLogits.fc.weight": (1008, 768)}), "1 unexpected"),
    (lambda s: s.update({"fc.weight": (1000, 2048)}),
     r"1 mis-shaped.*fc.weight is \(1000, 2048\), expected \(1008, 2048\)"),
])
def test_a_wrong_weights_file_is_refused_in_one_line(random_net, tmp_path, change, message):
    shapes = {k: tuple(v.shape) for k, v in random_net.state_dict().items()}
    change(shapes)
    with pytest.raises(GenddError, match=message) as e:
        load_fid_inception(tiny_file(tmp_path, shapes))
    assert "not pytorch-fid's Inception weights" in str(e.value) and "\n" not in str(e.value)


class NotATensor:
    pass


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"\x00 not a weights file", "cannot read Inception weights"),
    ({"fc.weight": NotATensor()}, "cannot read Inception weights"),  # refused by weights_only
    ({"fc.weight": [1.0, 2.0]}, "not a state dict of tensors"),
])
def test_unreadable_files_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(GenddError, match=message) as e:
        load_fid_inception(path)
    assert "\n" not in str(e.value)

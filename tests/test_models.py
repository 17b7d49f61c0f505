"""Evaluation networks: the literature's shapes, the zoo, and that the fast formulation computes
the same function as the straightforward one."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gendd.errors import GenddError
from gendd.evaluate import challenge_protocol, init_network, make_loss_fn, reinit_network_
from gendd.models.convnet import AvgPool2x2, ConvNet
from gendd.models.zoo import MODELS, build_model


def test_convnet_matches_the_challenge_architecture():
    net = ConvNet(3, 100, (32, 32))
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.features if isinstance(m, nn.GroupNorm)]
    pools = [m for m in net.features if isinstance(m, nn.AvgPool2d)]
    assert len(convs) == len(norms) == len(pools) == 3
    assert all(c.out_channels == 128 and c.kernel_size == (3, 3) and c.padding == (1, 1)
               for c in convs)
    assert all(n.num_groups == n.num_channels == 128 and n.affine for n in norms)
    assert any(isinstance(m, nn.ReLU) for m in net.features)
    assert net.embed_dim == 128 * 4 * 4 and net.classifier.in_features == 2048
    assert ConvNet(3, 200, (64, 64)).embed_dim == 128 * 8 * 8
    assert ConvNet(3, 200, (64, 64), depth=4).embed_dim == 128 * 4 * 4


def test_grey_28x28_is_padded_to_32x32_as_in_the_dc_code():
    net = ConvNet(1, 10, (28, 28))
    assert net.features[0].padding == (3, 3)
    x = torch.randn(2, 1, 28, 28)
    assert net.embed(x).shape == (2, 128 * 4 * 4)
    assert net(x).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_builds_every_model(name):
    for c, size in ((1, (28, 28)), (3, (32, 32))):
        net = build_model(name, c, 10, size)
        assert net(torch.randn(2, c, *size)).shape == (2, 10)


def test_zoo_uses_batchnorm_variants_for_cross_architecture():
    for name in ("resnet18", "vgg11"):
        net = build_model(name, 3, 10, (32, 32))
        assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert not any(isinstance(m, nn.GroupNorm) for m in net.modules())


def test_unknown_model_is_a_user_error():
    with pytest.raises(GenddError, match="unknown model"):
        build_model("alexnet9", 3, 10, (32, 32))


def test_groupnorm_c_c_is_instance_norm():
    x = torch.randn(4, 16, 7, 7)
    gn = nn.GroupNorm(16, 16)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2)
        gn.bias.uniform_(-1, 1)
    inn = nn.InstanceNorm2d(16, affine=True)
    inn.load_state_dict(gn.state_dict())
    assert torch.allclose(gn(x), inn(x), atol=1e-5)
    assert torch.allclose(gn(x), F.instance_norm(x, weight=gn.weight, bias=gn.bias), atol=1e-5)


def test_fast_loss_is_the_reference_function(monkeypatch):
    """The fast training step (compiled; autocast where supported) computes the reference's
    loss and gradients: exactly up to fp32 rounding without autocast, closely with bf16."""
    torch.manual_seed(0)
    net = ConvNet(1, 10, (12, 12), width=8, depth=2)
    x, y = torch.randn(20, 1, 12, 12), torch.randint(0, 10, (20,))
    cpu = torch.device("cpu")

    def loss_and_grads(fn):
        net.zero_grad()
        loss = fn(x, y)
        loss.backward()
        return loss.detach().float(), [p.grad.clone() for p in net.parameters()]

    ref_loss, ref_grads = loss_and_grads(make_loss_fn(net, cpu, fast=False))
    monkeypatch.setattr("gendd.evaluate.autocast_dtype", lambda device, fast: None)
    fast_loss, fast_grads = loss_and_grads(make_loss_fn(net, cpu, fast=True))  # compiled fp32
    assert torch.allclose(ref_loss, fast_loss, atol=1e-5)
    for a, b in zip(ref_grads, fast_grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)
    monkeypatch.setattr("gendd.evaluate.autocast_dtype",
                        lambda device, fast: torch.bfloat16 if fast else None)
    monkeypatch.setenv("GENDD_COMPILE", "0")
    bf_loss, bf_grads = loss_and_grads(make_loss_fn(net, cpu, fast=True))
    assert abs(float(bf_loss - ref_loss)) < 0.05 * float(ref_loss)
    for a, b in zip(ref_grads, bf_grads):
        if a.norm() > 1e-4:  # conv biases before instance norm get ~0 gradient: skip them
            assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.98


def test_pool_written_for_the_compiler_is_avg_pool():
    """AvgPool2x2's compiled formulation (reshape + mean) is avg_pool2d(2, 2), odd sizes
    included."""
    pool = AvgPool2x2()
    fused = torch.compile(pool, dynamic=False, backend="aot_eager")
    for shape in [(3, 4, 8, 8), (2, 3, 7, 9)]:
        x = torch.randn(shape)
        assert torch.allclose(fused(x), F.avg_pool2d(x, 2, 2), atol=1e-6)
        assert torch.equal(pool(x), F.avg_pool2d(x, 2, 2))


@pytest.mark.parametrize("name", list(MODELS))
def test_reinit_in_place_draws_the_fresh_network(name):
    """reinit_network_ gives exactly the weights init_network draws for the same seed, in
    the same parameter tensors."""
    protocol = challenge_protocol(model=name)
    ds = SimpleNamespace(channels=1, num_classes=10, image_size=(28, 28))
    net = init_network(protocol, ds, 1)
    ptrs = [p.data_ptr() for p in net.parameters()]
    reinit_network_(net, protocol, ds, 7)
    assert [p.data_ptr() for p in net.parameters()] == ptrs
    fresh = init_network(protocol, ds, 7)
    for (k, a), b in zip(net.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k

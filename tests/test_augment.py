"""DSA: the challenge's parameters, mode 'S', ranges of each transformation, determinism."""

import math

import torch

from gendd import augment
from gendd.augment import DSA_STRATEGY, DSAParams, choose_ops, dsa


def test_challenge_parameters():
    p = DSAParams()
    assert DSA_STRATEGY == "color_crop_cutout_flip_scale_rotate"
    assert (p.mode, p.prob_flip, p.ratio_scale, p.ratio_rotate, p.ratio_crop_pad,
            p.ratio_cutout, p.brightness, p.saturation, p.contrast) == \
        ("S", 0.5, 1.2, 15.0, 0.125, 0.5, 1.0, 2.0, 0.5)


def test_mode_s_picks_one_op_per_batch_uniformly():
    g = torch.Generator().manual_seed(0)
    picks = [choose_ops(DSA_STRATEGY, DSAParams(), g) for _ in range(3000)]
    assert all(len(p) == 1 for p in picks)
    counts = {op: sum(p[0] == op for p in picks) for op in DSA_STRATEGY.split("_")}
    assert all(400 < c < 600 for c in counts.values()), counts
    assert choose_ops(DSA_STRATEGY, DSAParams(mode="M"), g) == DSA_STRATEGY.split("_")


def test_seeded_and_reproducible():
    x = torch.randn(16, 3, 12, 12)
    a = dsa(x, torch.Generator().manual_seed(5))
    b = dsa(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    outs = {dsa(x, torch.Generator().manual_seed(s)).sum().item() for s in range(8)}
    assert len(outs) > 1


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_flip_is_flip_or_identity():
    x = torch.randn(400, 1, 5, 5)
    y = augment.rand_flip(x, DSAParams(), _g())
    flipped = (y == x.flip(3)).flatten(1).all(1)
    same = (y == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 150 < int(flipped.sum()) < 250


def test_brightness_and_contrast_ranges():
    p = DSAParams()
    x = torch.randn(500, 1, 4, 4)
    d = (augment.rand_brightness(x, p, _g()) - x)[:, 0, 0, 0]
    assert d.min() >= -0.5 * p.brightness and d.max() <= 0.5 * p.brightness
    c = augment.rand_contrast(x, p, _g())
    m = x.mean((1, 2, 3), keepdim=True)
    factor = ((c - m) / (x - m))[:, 0, 0, 0]
    assert factor.min() >= p.contrast - 1e-4 and factor.max() <= 1 + p.contrast + 1e-4
    # one channel: saturation is the identity, as in the challenge code
    assert torch.allclose(augment.rand_saturation(x, p, _g()), x)


def test_crop_translates_by_at_most_pad_ratio_with_zero_fill():
    x = torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8).repeat(300, 1, 1, 1)
    y = augment.rand_crop(x, DSAParams(), _g())  # shift up to int(8 * 0.125 + 0.5) = 1
    for i in range(300):
        found = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                ref = torch.zeros(8, 8)
                src = x[i, 0]
                for r in range(8):
                    for c in range(8):
                        if 0 <= r + dx < 8 and 0 <= c + dy < 8:
                            ref[r, c] = src[r + dx, c + dy]
                found |= torch.equal(ref, y[i, 0])
        assert found


def test_cutout_zeroes_a_clipped_half_size_square():
    x = torch.ones(500, 2, 28, 28)
    y = augment.rand_cutout(x, DSAParams(), _g())
    assert torch.equal(y[:, 0], y[:, 1])  # same mask on every channel
    zeros = (y[:, 0] == 0)
    rows, cols = zeros.any(2).sum(1), zeros.any(1).sum(1)
    assert int(zeros.flatten(1).sum(1).min()) > 0
    assert rows.max() == 14 and cols.max() == 14 and rows.min() >= 7 and cols.min() >= 7
    assert torch.equal(zeros.flatten(1).sum(1), rows * cols)  # a rectangle


def test_scale_and_rotate_are_within_range():
    p = DSAParams()
    g = _g()
    x = torch.zeros(1, 1, 33, 33)
    x[0, 0, 16, 28] = 1.0  # a point 12 px right of the centre
    ys = augment.rand_rotate(x.repeat(200, 1, 1, 1), p, g)
    ang = []
    for y in ys:
        w = y[0]
        r, c = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
        cr, cc = float((w * r).sum() / w.sum()), float((w * c).sum() / w.sum())
        ang.append(math.degrees(math.atan2(cr - 16, cc - 16)))
    assert max(abs(a) for a in ang) <= 15.5 and max(abs(a) for a in ang) > 10
    img = torch.ones(300, 1, 20, 20)
    s = augment.rand_scale(img, p, g)
    # zoom in (s < 1) keeps the image full; zoom out (s > 1) leaves a zero border
    frac = (s[:, 0] > 0.5).float().mean((1, 2))
    assert frac.min() >= 1 / 1.2**2 - 0.1 and frac.max() <= 1.0


def test_siamese_applies_one_transformation_to_all_and_is_differentiable():
    x = torch.randn(6, 1, 10, 10).repeat(2, 1, 1, 1).requires_grad_()
    for seed in range(12):
        y = dsa(x, torch.Generator().manual_seed(seed), siamese=True)
        assert torch.allclose(y[:6], y[6:])
        y.sum().backward()
        assert x.grad is not None

"""DM's loss terms: each rewards what it is meant to, is scale-free where it says so, and its
gradient points the right way."""

import pytest
import torch

from gendd.matching_losses import (all_block_features, centre_discrimination, class_mean_gap,
                                   gaussian_mmd_gap, kernel_regression_loss, spatial_attention)


def test_class_mean_gap_is_dms_loss():
    real = [torch.tensor([[0.0, 2.0], [2.0, 0.0]]), torch.tensor([[1.0, 1.0]])]
    syn = [torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 3.0], [2.0, 1.0]])]
    # class 0: means equal; class 1: (1, 1) vs (1, 2) -> 1
    assert class_mean_gap(real, syn).item() == pytest.approx(1.0)


def test_gaussian_mmd_gap_is_lowest_for_the_real_distribution():
    g = torch.Generator().manual_seed(0)
    real = [torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g) + 3]
    same = [torch.randn(50, 5, generator=g), torch.randn(50, 5, generator=g) + 3]
    shifted = [x + 1 for x in same]
    collapsed = [x.mean(0, keepdim=True).expand(50, 5) for x in real]  # right mean, no spread
    assert gaussian_mmd_gap(real, same) < gaussian_mmd_gap(real, shifted)
    assert gaussian_mmd_gap(real, same) < gaussian_mmd_gap(real, collapsed)
    assert class_mean_gap(real, collapsed) < 1e-10  # what DM's mean gap cannot tell apart
    two = [torch.ones(2, 5)]  # identical real vectors: zero median distance, still finite
    assert torch.isfinite(gaussian_mmd_gap(two, [torch.zeros(1, 5)]))


def test_gaussian_mmd_gap_with_several_bandwidths_averages_their_kernels():
    g = torch.Generator().manual_seed(1)
    real = [torch.randn(40, 3, generator=g) for _ in range(2)]
    syn = [torch.randn(4, 3, generator=g) for _ in range(2)]
    single = [gaussian_mmd_gap(real, syn, b) for b in (0.1, 1.0)]
    assert gaussian_mmd_gap(real, syn, [0.1, 1.0]).item() == pytest.approx(sum(single).item() / 2)
    assert gaussian_mmd_gap(real, syn, (0.25,)).item() == pytest.approx(
        gaussian_mmd_gap(real, syn).item())


def test_centre_discrimination_rewards_centres_that_classify_the_real_vectors():
    g = torch.Generator().manual_seed(2)
    means = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    real = [m + 0.5 * torch.randn(30, 2, generator=g) for m in means]
    right = [m.expand(2, 2) for m in means]
    swapped = [right[1], right[0], right[2]]
    assert centre_discrimination(real, right) < centre_discrimination(real, swapped)
    # scale-free: the same geometry at 10x the size gives the same loss
    assert centre_discrimination([10 * r for r in real], [10 * s for s in right]).item() == \
        pytest.approx(centre_discrimination(real, right).item(), rel=1e-5)
    # the gradient moves a class's centre towards its own real vectors, away from the others'
    near_other = [means[0].expand(1, 2), torch.tensor([[1.0, 0.0]]), means[2].expand(1, 2)]
    centre = near_other[1].requires_grad_(True)
    centre_discrimination(real, near_other).backward()
    assert centre.grad[0, 0] < 0  # gradient descent moves it to larger x, towards class 1


def test_kernel_regression_loss_rewards_support_points_that_predict_the_real_labels():
    g = torch.Generator().manual_seed(3)
    means = torch.tensor([[4.0, 0.0, 1.0], [0.0, 4.0, 1.0], [-4.0, -4.0, 1.0]])
    real = [m + 0.5 * torch.randn(30, 3, generator=g) for m in means]
    right = [m + 0.3 * torch.randn(2, 3, generator=g) for m in means]
    swapped = [right[1], right[0], right[2]]
    assert kernel_regression_loss(real, right) < 0.5 < kernel_regression_loss(real, swapped)
    # scale-free: the same geometry at 10x the size gives the same loss
    assert kernel_regression_loss([10 * r for r in real], [10 * s for s in right]).item() == \
        pytest.approx(kernel_regression_loss(real, right).item(), rel=1e-4)
    # a larger ridge shrinks the predictions towards zero: a worse fit of separable classes
    assert kernel_regression_loss(real, right, ridge=10.0) > kernel_regression_loss(real, right)
    # gradient descent on a misplaced support point lowers the loss
    moved = [s.clone() for s in right]
    moved[0] = (means[1] + 0.1).expand(2, 3).clone().requires_grad_(True)
    before = kernel_regression_loss(real, moved)
    before.backward()
    step = [s.detach() for s in moved]
    step[0] = step[0] - 0.01 * moved[0].grad
    assert kernel_regression_loss(real, step) < before


def test_spatial_attention_is_unit_length_and_channel_pooled():
    maps = torch.zeros(2, 3, 2, 2)
    maps[0, :, 0, 0] = 2.0  # one hot position, any sign and channel count
    maps[1, 0, 1, 1] = -1.0
    a = spatial_attention(maps)
    assert a.shape == (2, 4)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))
    assert a[0].tolist() == [1.0, 0.0, 0.0, 0.0] and a[1].tolist() == [0.0, 0.0, 0.0, 1.0]
    # |x|^4: a position twice as active weighs 16 times as much
    maps = torch.ones(1, 1, 1, 2)
    maps[0, 0, 0, 1] = 2.0
    a = spatial_attention(maps)[0]
    assert (a[1] / a[0]).item() == pytest.approx(16.0)


def test_all_block_features_kernel_is_the_mean_of_the_pooled_blocks_kernels():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(5, 3, 8, 8, generator=g), torch.randn(5, 4, 4, 4, generator=g),
            torch.randn(5, 2, 2, 2, generator=g)]
    f = all_block_features(maps)
    assert f.shape == (5, 3 * 4 + 4 * 4 + 2 * 4)
    pooled = [torch.nn.functional.avg_pool2d(m, m.shape[-1] // 2).flatten(1) for m in maps]
    assert torch.allclose(f @ f.T, sum(p @ p.T for p in pooled) / 3, atol=1e-5)
    assert torch.allclose(f[:, -8:], maps[-1].flatten(1) / 3 ** 0.5)  # the last block as is

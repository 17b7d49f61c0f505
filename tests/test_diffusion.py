import torch

from gendd.diffusion import guided_prediction, sample_latents, sampling_scheduler, training_scheduler
from gendd.models.denoiser import build_denoiser


def tiny_unet():
    torch.manual_seed(0)
    return build_denoiser(4, 4, num_classes=3, block_out_channels=(16, 32), layers_per_block=1,
                          attention_head_dim=8, norm_num_groups=8).eval()


def test_guidance_combines_conditional_and_null_class_passes():
    net = tiny_unet()
    x, t, y = torch.randn(2, 4, 4, 4), torch.tensor(500), torch.tensor([0, 2])
    with torch.no_grad():
        cond = net(x, t, class_labels=y).sample
        uncond = net(x, t, class_labels=torch.tensor([3, 3])).sample
        assert torch.allclose(guided_prediction(net, x, t, y, 3, 1.0), cond, atol=1e-5)
        assert torch.allclose(guided_prediction(net, x, t, y, 3, 3.0),
                              uncond + 3.0 * (cond - uncond), atol=1e-4)
        assert not torch.allclose(cond, uncond)  # the null class is a class of its own


def test_seeded_sampling_is_deterministic_for_every_solver():
    net = tiny_unet()
    train = training_scheduler("v_prediction", "squaredcos_cap_v2")
    for solver in ("dpm++", "unipc", "ddim"):
        runs = [sample_latents(net, sampling_scheduler(train, solver), torch.tensor([0, 1, 2]),
                               (4, 4, 4), 4, 2.0, 3, torch.Generator().manual_seed(7))
                for _ in range(2)]
        assert runs[0].shape == (3, 4, 4, 4) and torch.isfinite(runs[0]).all()
        assert torch.equal(runs[0], runs[1]), solver


def test_partial_denoising_starts_from_the_given_latents():
    net = tiny_unet()
    sched = sampling_scheduler(training_scheduler("v_prediction", "squaredcos_cap_v2"), "ddim")
    init = torch.randn(2, 4, 4, 4)
    out = sample_latents(net, sched, torch.tensor([0, 1]), (4, 4, 4), 10, 1.0, 3,
                         torch.Generator().manual_seed(0), init_latents=init, strength=0.1)
    full = sample_latents(net, sched, torch.tensor([0, 1]), (4, 4, 4), 10, 1.0, 3,
                          torch.Generator().manual_seed(0))
    # One step from a lightly noised start stays near it; from pure noise it does not.
    assert (out - init).abs().mean() < (full - init).abs().mean()

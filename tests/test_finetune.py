"""Fine-tuning the denoiser on the stored statistics (`gendd.finetune`): the sampler it
differentiates is the one generation runs, the fine-tuned samples match the statistics better,
and the data-free ways of `generate` sample with the fine-tuned denoiser."""

import dataclasses
import shutil

import pytest
import torch
from click.testing import CliRunner

from gendd.cli import main
from gendd.diffusion import sample_latents, sample_latents_differentiably, sampling_scheduler
from gendd.finetune import finetune_denoiser, sample_matching_loss
from gendd.latent_model import LatentModel
from gendd.real_statistics import load_statistics
from gendd.refine import embedding_network, settings_at, stored_draws, stored_settings
from gendd.run_dir import read_config
from gendd.sets import load_set


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GENDD_COMPILE", "0")


def _noise(model, n, seed):
    return torch.randn((n, *model.latent_shape), generator=torch.Generator().manual_seed(seed))


def test_differentiable_sampling_is_generation_s_sampling_with_gradients_at_the_end(tiny_run):
    model, cfg = LatentModel.load(tiny_run), read_config(tiny_run)
    labels = torch.arange(4)
    noise = _noise(model, 4, 1)
    scheduler = sampling_scheduler(model.scheduler, cfg.sampler.solver)
    args = (cfg.sampler.steps, 2.0, model.null_class)
    plain = sample_latents(model.denoiser, scheduler, labels, model.latent_shape, *args,
                           generator=torch.Generator(), noise=noise)
    model.denoiser.requires_grad_(True)
    tail = sample_latents_differentiably(model.denoiser, scheduler, labels, noise, *args, 1)
    assert torch.allclose(tail, plain, atol=1e-5)
    tail.square().sum().backward()
    grads = [p.grad for p in model.denoiser.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    none = sample_latents_differentiably(model.denoiser, scheduler, labels, noise, *args, 0)
    assert not none.requires_grad


def _stored_loss(model, cfg, stats, draws: int, seed: int) -> float:
    """The fine-tuning loss of fresh samples (noise of `seed`), averaged over the first draws."""
    settings = stored_settings(settings_at(cfg.refine, cfg.train.finetune_ipc), stats)
    geometry = stats.geometry()
    net, embed = embedding_network(geometry, settings.feature_blocks, torch.device("cpu"))
    labels = torch.arange(model.num_classes).repeat_interleave(cfg.train.finetune_ipc)
    scheduler = sampling_scheduler(model.scheduler, cfg.sampler.solver)
    total, it = 0.0, stored_draws(stats, net, settings, torch.device("cpu"))
    with torch.no_grad():
        for i in range(draws):
            _, aug_seeds, points = next(it)
            total += sample_matching_loss(model, scheduler, _noise(model, len(labels), seed + i),
                                          labels, cfg.sampler, 0, points, aug_seeds, embed,
                                          settings, geometry).item()
    return total / draws


def test_finetuning_lowers_the_stored_loss_of_new_samples_and_keeps_the_base(tiny_run):
    model, stats = LatentModel.load(tiny_run), load_statistics(tiny_run)
    cfg = read_config(tiny_run)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, finetune_iterations=12, finetune_lr=1e-3))
    base = {k: v.clone() for k, v in model.denoiser.state_dict().items()}
    tuned = finetune_denoiser(model, stats, cfg)
    assert all(torch.equal(v, base[k]) for k, v in model.denoiser.state_dict().items())
    assert not all(torch.equal(v, base[k]) for k, v in tuned.denoiser.state_dict().items())
    before = _stored_loss(model, cfg, stats, 3, seed=99)
    after = _stored_loss(tuned, cfg, stats, 3, seed=99)
    assert after < 0.9 * before, (before, after)


def test_data_free_generation_samples_with_the_finetuned_denoiser(tiny_run, tmp_path):
    assert (tiny_run / "denoiser-finetuned").is_dir()  # `train` made it (tiny: 2 iterations)
    out = tmp_path / "b.safetensors"
    r = CliRunner().invoke(main, ["generate", str(tiny_run), "--time-budget", "3", "--steps",
                                  "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert load_set(out).metadata["sampler"]["denoiser"] == "finetuned"
    noise = tmp_path / "n.safetensors"
    r = CliRunner().invoke(main, ["generate", str(tiny_run), "--ipc", "1", "--refine", "none",
                                  "--set", "sampler.init=noise", "--out", str(noise)])
    assert r.exit_code == 0, r.output
    assert load_set(noise).metadata["sampler"]["denoiser"] == "base"
    # A run without it (made before the stage, or with train.finetune_iterations 0)
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run, bare, ignore=shutil.ignore_patterns("denoiser-finetuned"))
    r = CliRunner().invoke(main, ["generate", str(bare), "--time-budget", "3", "--out",
                                  str(tmp_path / "c.safetensors")])
    assert r.exit_code == 2 and "no fine-tuned denoiser" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "c.safetensors").exists()

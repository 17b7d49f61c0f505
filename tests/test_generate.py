import dataclasses

import pytest
import torch

from gendd.config import RefineConfig, SamplerConfig
from gendd.generate import generate_set, generate_within_budget
from gendd.latent_model import LatentModel
from gendd.sets import load_set

SAMPLER = SamplerConfig(solver="dpm++", steps=3, guidance=2.0, batch_size=64, init="noise")


def test_sets_are_class_ordered_balanced_and_seeded(tiny_run, tmp_path):
    model = LatentModel.load(tiny_run)
    meta = generate_set(model, tmp_path / "a.safetensors", "fashion-mnist", 3, SAMPLER, seed=1,
                        progress=False)
    a = load_set(tmp_path / "a.safetensors")
    assert a.images.shape == (30, 1, 28, 28) and a.images.dtype == torch.uint8
    assert a.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert meta["ipc"] == 3 and meta["images_per_s"] > 0 and a.metadata["seed"] == 1
    # Same seed, other batch size: the same images. Other seed: other images.
    generate_set(model, tmp_path / "b.safetensors", "fashion-mnist", 3,
                 dataclasses.replace(SAMPLER, batch_size=7), seed=1, progress=False)
    b = load_set(tmp_path / "b.safetensors")
    assert (a.images.int() - b.images.int()).abs().max() <= 1  # batch-size rounding only
    generate_set(model, tmp_path / "c.safetensors", "fashion-mnist", 3, SAMPLER, seed=2,
                 progress=False)
    assert not torch.equal(a.images, load_set(tmp_path / "c.safetensors").images)


def test_class_shards_merge_into_the_single_process_set(tiny_run, tmp_path):
    model = LatentModel.load(tiny_run)
    generate_set(model, tmp_path / "all.safetensors", "fashion-mnist", 2, SAMPLER, progress=False)
    full = load_set(tmp_path / "all.safetensors")
    shards = []
    for rank, classes in enumerate((range(0, 5), range(5, 10))):
        generate_set(model, tmp_path / f"r{rank}.safetensors", "fashion-mnist", 2, SAMPLER,
                     classes=classes, progress=False)
        s = load_set(tmp_path / f"r{rank}.safetensors")
        assert sorted(set(s.labels.tolist())) == list(classes)
        shards.append(s.images)
    assert (torch.cat(shards).int() - full.images.int()).abs().max() <= 1


def test_time_budget_is_respected_and_balanced(tiny_run, tmp_path):
    model = LatentModel.load(tiny_run)
    budget = 20.0
    meta = generate_within_budget(model, tmp_path / "t.safetensors", "fashion-mnist", budget,
                                  SAMPLER, progress=False)
    s = load_set(tmp_path / "t.safetensors")
    assert meta["generation_wall_time_s"] <= budget * 1.5  # generous on a noisy machine
    # it stopped only when not even one more image per class was predicted to fit in what the
    # write reserve leaves
    assert meta["generation_wall_time_s"] + meta["predicted_round_s"] > budget * 0.9
    # and the budget is used: rounds grow 1, 2, 4, ... per class, so no prediction is scaled
    # up more than twice from a measured round
    assert meta["generation_wall_time_s"] >= budget * 0.5
    assert meta["rounds"] >= 2
    assert meta["ipc"] >= 1 and s.counts_per_class(10) == [meta["ipc"]] * 10


def test_time_budget_rounds_grow_by_doubling_and_predict_from_measured_rounds():
    from gendd.generate import predict_round_s, round_size_ladder

    assert round_size_ladder(1) == [1]
    assert round_size_ladder(8) == [1, 2, 4, 8]
    assert round_size_ladder(50) == [1, 2, 4, 8, 16, 32, 50]
    slowest = {1: 3.0, 2: 1.0, 4: 1.5}  # the 1-image round paid the warm-up
    assert predict_round_s(slowest, 1) == 1.0  # never more than a bigger round that ran
    assert predict_round_s(slowest, 4) == 1.5
    assert predict_round_s(slowest, 8) == 3.0  # scaled up from the largest round run


def test_too_short_a_budget_is_a_user_error(tiny_run, tmp_path):
    import pytest

    from gendd.errors import GenddError

    with pytest.raises(GenddError, match="too short for one image per class"):
        generate_within_budget(LatentModel.load(tiny_run), tmp_path / "t.safetensors",
                               "fashion-mnist", 0.01, SAMPLER, progress=False)
    assert not (tmp_path / "t.safetensors").exists()


def test_kmeans_finds_separated_clusters_and_is_seeded():
    from gendd.prototypes import kmeans

    g = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(50, 3, generator=g) * 0.1 + c
                       for c in (torch.tensor([5.0, 0, 0]), torch.tensor([0, 5.0, 0]),
                                 torch.tensor([0, 0, 5.0]))])
    centres = kmeans(blobs, 3, torch.Generator().manual_seed(1))
    assert sorted(centres.argmax(1).tolist()) == [0, 1, 2]
    assert torch.allclose(centres.max(1).values, torch.full((3,), 5.0), atol=0.1)
    assert torch.equal(centres, kmeans(blobs, 3, torch.Generator().manual_seed(1)))
    assert kmeans(blobs[:2], 5, g).shape == (5, 3)  # more centres than points: repeats


def test_prototype_seeding_starts_from_each_class_s_real_latents(tiny_run, small_fashion, tmp_path):
    import pytest

    from gendd.data import load_dataset
    from gendd.errors import GenddError
    from gendd.pipeline import real_latents

    model = LatentModel.load(tiny_run)
    sampler = dataclasses.replace(SAMPLER, init="prototypes", strength=0.5)
    with pytest.raises(GenddError, match="latents"):
        generate_set(model, tmp_path / "x.safetensors", "fashion-mnist", 2, sampler, progress=False)
    data = load_dataset("fashion-mnist", small_fashion)
    aids = {"real_latents": real_latents(tiny_run, sampler, data, model, progress=False)}
    latents, labels = aids["real_latents"]
    assert len(latents) == len(labels) == len(data.train_labels)
    generate_set(model, tmp_path / "p.safetensors", "fashion-mnist", 2, sampler, progress=False,
                 **aids)
    p = load_set(tmp_path / "p.safetensors")
    assert p.images.shape == (20, 1, 28, 28)
    assert p.labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_ddpm_sets_do_not_depend_on_sampler_batch_size(tiny_run, tmp_path):
    model = LatentModel.load(tiny_run)
    ddpm = dataclasses.replace(SAMPLER, solver="ddpm", steps=3)
    sets = []
    for batch_size in (64, 2):  # all classes in one batch; a class split over two batches
        path = tmp_path / f"b{batch_size}.safetensors"
        generate_set(model, path, "fashion-mnist", 3, dataclasses.replace(ddpm, batch_size=batch_size),
                     seed=1, progress=False)
        sets.append(load_set(path).images)
    assert (sets[0].int() - sets[1].int()).abs().max() <= 1  # batch-size rounding only




def test_make_set_refines_the_sampled_set_and_keeps_both(tiny_run, small_fashion, tmp_path):
    from gendd.data import load_dataset
    from gendd.pipeline import make_set
    from gendd.refine import refine, settings_at
    from gendd.run_dir import read_config

    cfg, model = read_config(tiny_run), LatentModel.load(tiny_run)
    data = load_dataset("fashion-mnist", small_fashion)
    one_iteration = RefineConfig(iterations=1, batch_real=4, per_ipc={})
    out = tmp_path / "ipc2.safetensors"
    meta = make_set(tiny_run, cfg, SAMPLER, one_iteration, data, model, 2, out, seed=0,
                    progress=False)
    sampled, refined = load_set(tmp_path / "ipc2.sampled.safetensors"), load_set(out)
    assert torch.equal(sampled.labels, refined.labels)
    assert refined.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert not torch.equal(sampled.images, refined.images)  # DM moved the pixels
    settings = settings_at(one_iteration, 2)
    assert meta["refine"]["lr"] == pytest.approx(0.2) and meta["refine"]["regression"] == 200.0
    assert {k: refined.metadata["refine"][k] for k in ("iterations", "mmd", "lr_schedule")} \
        == {"iterations": 1, "mmd": 250.0, "lr_schedule": "cosine"}
    assert refined.metadata["sampler"]["init"] == "noise"  # the sampling is recorded too
    # ... and those are the settings it ran with: refine called directly moves the pixels alike
    assert torch.equal(refine(data, 2, settings, 0, init=sampled).images, refined.images)
    plain = make_set(tiny_run, cfg, SAMPLER, RefineConfig(method="none"), data, model, 2,
                     tmp_path / "plain.safetensors", seed=0, progress=False)
    assert "refine" not in plain
    assert torch.equal(load_set(tmp_path / "plain.safetensors").images, sampled.images)

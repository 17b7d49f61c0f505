"""Refinement (DM and its terms): the per-IPC settings, the loop's behaviour, `baseline dm`."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from gendd.baselines import random_real
from gendd.cli import main
from gendd.config import RefineConfig, RunConfig, with_overrides
from gendd.errors import GenddError
from gendd.refine import DM_PAPER, matched_images, refine, settings_at, starting_set
from gendd.sets import DistilledSet, load_set
from toy_data import toy_dataset

# DM's settings with iterations and real images cut for speed.
FAST = dataclasses.replace(DM_PAPER, iterations=2, batch_real=4)


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GENDD_COMPILE", "0")


def _moved(settings, ds=None, ipc=2, seed=1, init=None):
    ds = ds or toy_dataset(per_class=8)
    return matched_images(ds, starting_set(ds, ipc, seed, init), settings, seed)


def test_the_default_rules_at_each_ipc():
    got = {ipc: settings_at(RefineConfig(), ipc) for ipc in (1, 2, 10, 49, 50, 100)}
    for ipc, s in got.items():
        assert (s.per_ipc, s.reference_ipc) == ({}, 0)
        assert s.lr == pytest.approx(ipc / 10) and s.regression == pytest.approx(400 / ipc)
        assert s.stored_lr == pytest.approx(4 * ipc / 10)
        assert s.sigma_lr == pytest.approx((4 if ipc >= 50 else 1) * ipc / 10)
        assert (s.lr_schedule, s.augmentation, s.batch_real) == ("cosine", "shared", 256)
    assert [(got[i].iterations, got[i].range_projection, got[i].feature_blocks, got[i].mmd,
             got[i].discrimination) for i in (1, 2, 10, 49, 50, 100)] == [
        (200, "every-step", "last", 0.0, 300.0),
        (300, "at-end", "last", 250.0, 0.0), (300, "at-end", "last", 250.0, 0.0),
        (300, "at-end", "last", 250.0, 0.0),
        (1000, "every-step", "all", 250.0, 0.0), (1000, "every-step", "all", 250.0, 0.0)]
    # the same arithmetic as before the rules were a table, bit for bit
    assert settings_at(RefineConfig(), 50).lr == 1.0 * 50 / 10
    assert settings_at(RefineConfig(), 3).regression == 40.0 * 10 / 3


def test_a_setting_given_by_the_user_holds_at_every_ipc():
    cfg = with_overrides(RunConfig(), {"refine.iterations": 7, "refine.mmd": 5}).refine
    assert {settings_at(cfg, ipc).iterations for ipc in (1, 10, 50)} == {7}
    assert {settings_at(cfg, ipc).mmd for ipc in (1, 10, 50)} == {5.0}
    assert settings_at(cfg, 50).feature_blocks == "all"  # the rest of the rule stays
    table = with_overrides(RunConfig(), {"refine.per_ipc": {5: {"iterations": 9}}}).refine
    assert [settings_at(table, ipc).iterations for ipc in (1, 5, 50)] == [300, 9, 9]


def test_dm_paper_settings_scale_nothing():
    s = settings_at(DM_PAPER, 50)
    assert (s.lr, s.regression, s.mmd, s.iterations) == (1.0, 0.0, 0.0, 1000)


def test_refine_learns_from_real_initialisation_and_quantises():
    ds = toy_dataset(per_class=8)
    start = ds.normalize(starting_set(ds, 2, 1, None).images)
    f = _moved(FAST, ds)
    s = refine(ds, 2, FAST, seed=1)
    assert s.images.shape == (6, 1, 28, 28) and s.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert not torch.equal(f, start)  # the images moved
    assert torch.equal(s.images, ((f * 0.25 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8))
    assert torch.equal(refine(ds, 2, FAST, seed=1).images, s.images)  # deterministic
    assert s.metadata["settings"]["iterations"] == 2 and s.metadata["init"] == "random real"
    with pytest.raises(GenddError, match="settings at one IPC"):
        refine(ds, 2, RefineConfig(), seed=1)


def test_every_step_projection_keeps_the_images_in_the_pixel_range():
    # The toy data's pixels reach 0 and 255 (normalised -2 and 2): a large rate pushes the free
    # images past them, the projected ones stop at them.
    fast = dataclasses.replace(FAST, iterations=3, lr=100.0)
    free = _moved(fast)
    kept = _moved(dataclasses.replace(fast, range_projection="every-step"))
    assert free.min() < -2 or free.max() > 2
    assert kept.min() >= -2 and kept.max() <= 2 and not torch.equal(kept, free.clamp(-2, 2))


def test_each_term_and_switch_changes_the_images():
    plain = _moved(FAST)
    for change in (dict(mmd=100.0), dict(discrimination=100.0), dict(regression=10.0),
                   dict(regression=10.0, feature_blocks="all"), dict(lr_schedule="cosine"),
                   dict(augmentation="shared")):
        moved = _moved(dataclasses.replace(FAST, **change))
        assert torch.isfinite(moved).all() and not torch.allclose(moved, plain), change
    # the cosine schedule starts at the full rate: a single step moves as the constant rate
    one_step = [_moved(dataclasses.replace(FAST, iterations=0, lr_schedule=s))
                for s in ("constant", "cosine")]
    assert torch.equal(*one_step)


def test_shared_augmentation_transforms_every_class_alike():
    # Every class has the same real images and starts from the same two synthetic ones, so
    # DM's per-class mean term moves each class alike unless their DSA draws differ.
    ds = toy_dataset()
    ds.train_images[:] = ds.train_images[0]
    start = toy_dataset(seed=1).train_images[:2].repeat(3, 1, 1, 1)
    init = DistilledSet(start, torch.arange(3).repeat_interleave(2), {"generator": "test"})
    for augmentation, alike in (("shared", True), ("per-class", False)):
        f = _moved(dataclasses.replace(FAST, iterations=3, augmentation=augmentation), ds,
                   init=init)
        classes = f.view(3, 2, *f.shape[1:])
        assert not torch.allclose(classes[0], ds.normalize(start[:2]))  # DM moved them
        assert all(torch.allclose(classes[0], c, atol=1e-5) for c in classes[1:]) == alike


def test_refine_starts_from_a_given_set_and_refuses_the_wrong_layout():
    ds = toy_dataset(per_class=8)
    start = random_real(ds, 2, seed=5)
    shuffled = DistilledSet(start.images.flip(0), start.labels.flip(0), {"generator": "test"})
    moved = refine(ds, 2, dataclasses.replace(FAST, iterations=1), seed=1, init=shuffled)
    assert moved.metadata["init"] == "test" and moved.labels.tolist() == [0, 0, 1, 1, 2, 2]
    target = shuffled.sorted_by_class().images.float()
    other = random_real(ds, 2, seed=6).images.float()
    assert not torch.equal(moved.images.float(), target)  # it learnt ...
    # ... from the given images (in class order), not from random real ones
    assert (moved.images.float() - target).abs().mean() < \
        (moved.images.float() - other).abs().mean()
    with pytest.raises(GenddError, match="2 images of each of the 3 classes"):
        refine(ds, 2, FAST, seed=1, init=random_real(ds, 3, seed=5))


def test_compiled_refinement_computes_the_eager_one(monkeypatch):
    """The compiled embedding (one network re-drawn in place) moves the images as the eager
    one does, up to rounding, and really is compiled (no fallback to eager)."""
    import warnings

    ds = toy_dataset(per_class=8)
    start = ds.normalize(starting_set(ds, 2, 1, None).images)
    eager = _moved(FAST, ds)
    monkeypatch.setenv("GENDD_COMPILE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = _moved(FAST, ds)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    moved, moved_fused = (eager - start).flatten(), (fused - start).flatten()
    assert moved.norm() > 0.1
    assert torch.nn.functional.cosine_similarity(moved, moved_fused, dim=0) > 0.95


def test_baseline_dm_is_refine_with_the_dm_paper_settings(tmp_path, monkeypatch):
    ds = toy_dataset(per_class=8)
    monkeypatch.setattr("gendd.data.load_dataset", lambda name, root=None: ds)
    out = tmp_path / "dm.safetensors"
    args = ["baseline", "dm", "--dataset", "toy", "--ipc", "2", "-q", "--seed", "1",
            "--out", str(out), "--set", "refine.iterations=2", "--set", "refine.batch_real=4"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert torch.equal(load_set(out).images, refine(ds, 2, FAST, seed=1).images)
    res = CliRunner().invoke(main, args[:-2] + ["--set", "refine.batch_real=0", "--force"])
    assert res.exit_code == 2 and "refine.batch_real must be >= 1" in res.output
    res = CliRunner().invoke(main, args[:-2] + ["--set", "sampler.steps=3", "--force"])
    assert res.exit_code == 2 and "only refine.* can be set here" in res.output

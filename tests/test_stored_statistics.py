"""Refinement against a run's stored statistics (`refine.method` stored): it reproduces DM's
mean and kernel regression terms on the real data, and `gendd generate --refine stored` reads
nothing but the run."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

import gendd.refine
from gendd.cli import main
from gendd.config import RefineConfig
from gendd.errors import GenddError
from gendd.real_statistics import (FILE, load_statistics, principal_spread, save_statistics,
                                   sigma_points)
from gendd.refine import (matched_images, record_statistics, settings_at, starting_set,
                          stored_settings)
from gendd.sets import load_set
from toy_data import toy_dataset

MEAN_ONLY = RefineConfig(iterations=3, batch_real=4, lr=1.0, sigma_lr=1.0, stored_lr=1.0,
                         reference_ipc=0, augmentation="shared", mmd=0.0, discrimination=0.0,
                         regression=0.0, per_ipc={})


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GENDD_COMPILE", "0")


def test_sigma_points_have_the_mean_and_the_top_part_of_the_covariance():
    x = torch.randn(40, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64)
    centred = x - x.mean(0)
    cov = centred.T @ centred / len(x)
    values, vectors = torch.linalg.eigh(cov)
    for m in (6, 2):
        spread = principal_spread(x, m)
        top = vectors[:, -m:] @ torch.diag(values[-m:]) @ vectors[:, -m:].T
        assert torch.allclose(spread.T @ spread, top, atol=1e-9)
        points = sigma_points(x.mean(0), spread)
        assert points.shape == (2 * m, 6)
        assert torch.allclose(points.mean(0), x.mean(0), atol=1e-12)
        p = points - points.mean(0)
        assert torch.allclose(p.T @ p / len(points), top, atol=1e-9)
    # more directions than points: the extra ones are zero
    assert principal_spread(x[:3], 5)[3:].abs().max() < 1e-9


@pytest.mark.parametrize("blocks,regression,spread", [("last", 0.0, True), ("all", 0.0, False),
                                                      ("last", 40.0, True)])
def test_stored_refinement_takes_the_steps_of_dm_on_the_real_data(tmp_path, monkeypatch, blocks,
                                                                   regression, spread):
    """Recorded with the refinement's seed, the stored draws are its iterations' real side: the
    same images come out, but for the fp16 rounding of the stored statistics (in fp32 they are
    equal; the rounding moves them by 0.2-0.6 % of the refinement's step). With as many
    directions as real images per class, the sigma points carry the batch's whole covariance,
    so the kernel regression term is matched exactly too. Embedded in fp32 (bf16, where the CPU
    has it, would move them by more than the rounding)."""
    monkeypatch.setattr(gendd.refine, "autocast_dtype", lambda device, fast: None)
    ds = toy_dataset(per_class=8)
    settings = dataclasses.replace(MEAN_ONLY, feature_blocks=blocks, regression=regression)
    save_statistics(tmp_path / FILE, record_statistics(ds, draws=4, batch_real=4, components=4,
                                                       seed=3))
    stats = load_statistics(tmp_path)
    stats = stats if spread else dataclasses.replace(stats, spread=None)
    start = starting_set(ds, 2, 0, None)
    on_real = matched_images(ds, start, settings, seed=3)
    on_stored = matched_images(stats, start, settings, seed=3)
    moved = (on_real - ds.normalize(start.images)).norm()
    assert moved > 5 and (on_stored - on_real).norm() < 0.01 * moved
    if regression:  # and the term mattered
        without = matched_images(ds, start, dataclasses.replace(settings, regression=0.0), seed=3)
        assert (without - on_real).norm() > 0.1 * moved


def test_stored_statistics_set_the_learning_rate_by_what_they_hold():
    """Statistics stored without spread: the regression term is dropped and the images move at
    `stored_lr`. With spread they move at `sigma_lr`, regression kept. `lr` (the rate against
    real batches) is used by neither."""
    ds = toy_dataset(per_class=8)
    stats = record_statistics(ds, draws=4, batch_real=4, components=4, seed=3)
    means_only = dataclasses.replace(stats, spread=None)
    start = starting_set(ds, 2, 0, None)
    settings = dataclasses.replace(MEAN_ONLY, regression=40.0)
    base = matched_images(means_only, start, settings)
    assert torch.equal(matched_images(means_only, start, dataclasses.replace(settings, lr=7.0,
                                                                            regression=0.0)),
                       base)
    faster = matched_images(means_only, start, dataclasses.replace(settings, stored_lr=2.0))
    first = ds.normalize(start.images)
    assert (faster - first).norm() > 1.5 * (base - first).norm()
    assert stored_settings(settings, means_only).regression == 0.0
    kept = stored_settings(dataclasses.replace(settings, lr=3.0, sigma_lr=6.0, stored_lr=5.0,
                                               feature_blocks="all"), stats)
    assert (kept.lr, kept.regression, kept.mmd, kept.discrimination) == (6.0, 40.0, 0.0, 0.0)
    assert kept.feature_blocks == "last"  # the spread's features
    on_points = matched_images(stats, start, settings)
    assert torch.equal(matched_images(stats, start, dataclasses.replace(settings, lr=7.0)),
                       on_points)
    faster_on_points = matched_images(stats, start, dataclasses.replace(settings, sigma_lr=2.0))
    assert (faster_on_points - first).norm() > 1.5 * (on_points - first).norm()


def test_stored_components_picks_the_top_directions_of_the_spread():
    """`stored_components` k uses the top k stored directions (statistics recorded with k
    directions give the same steps), is capped at the stored count, and the rule from 50
    images per class up uses more directions than below."""
    ds = toy_dataset(per_class=8)
    stats = record_statistics(ds, draws=3, batch_real=6, components=4, seed=3)
    start = starting_set(ds, 2, 0, None)
    settings = dataclasses.replace(MEAN_ONLY, regression=40.0)
    top2 = dataclasses.replace(stats, spread=stats.spread[:, :, :2].contiguous())
    two = matched_images(stats, start, dataclasses.replace(settings, stored_components=2))
    assert torch.equal(two, matched_images(top2, start, settings))
    four = matched_images(stats, start, dataclasses.replace(settings, stored_components=4))
    assert not torch.equal(two, four)
    assert stored_settings(dataclasses.replace(settings, stored_components=32),
                           stats).stored_components == 4
    assert (settings_at(RefineConfig(), 10).stored_components,
            settings_at(RefineConfig(), 50).stored_components) == (8, 32)


def test_stored_draws_are_used_again_from_the_first_after_the_last(tmp_path):
    """Four draws and eight iterations: draws 0-3, then 0-3 again, equal to a run where the
    four draws are stored twice over."""
    ds = toy_dataset(per_class=8)
    stats = record_statistics(ds, draws=4, batch_real=4, components=4, seed=3)
    twice = dataclasses.replace(stats, net_seeds=stats.net_seeds.repeat(2),
                                aug_seeds=stats.aug_seeds.repeat(2),
                                means=stats.means.repeat(2, 1, 1),
                                spread=stats.spread.repeat(2, 1, 1, 1))
    start = starting_set(ds, 2, 0, None)
    settings = dataclasses.replace(MEAN_ONLY, iterations=7, regression=40.0)
    assert torch.equal(matched_images(stats, start, settings), matched_images(twice, start, settings))


def test_a_run_without_statistics_or_with_a_broken_file_is_a_one_line_error(tmp_path):
    with pytest.raises(GenddError, match="no stored real-data statistics.*gendd train"):
        load_statistics(tmp_path)
    (tmp_path / FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(GenddError, match="not a gendd statistics file"):
        load_statistics(tmp_path)
    stats = record_statistics(toy_dataset(per_class=8), draws=2, batch_real=4, components=2)
    for bad in (stats.spread[:, :, :0], stats.spread[..., 1:]):  # no direction; wrong length
        save_statistics(tmp_path / FILE, dataclasses.replace(stats, spread=bad))
        with pytest.raises(GenddError, match="spread shape"):
            load_statistics(tmp_path)


def test_statistics_without_spread_are_written_and_read_without_it(tmp_path):
    stats = record_statistics(toy_dataset(per_class=8), draws=2, batch_real=4, components=0)
    assert stats.spread is None
    save_statistics(tmp_path / FILE, stats)
    loaded = load_statistics(tmp_path)
    assert loaded.spread is None and torch.equal(loaded.means, stats.means)
    points = loaded.class_points(0, "last")
    assert [p.shape[0] for p in points] == [1] * len(points)  # the class means alone


def test_herding_keeps_the_candidates_closest_to_the_stored_means(tmp_path):
    """Candidates: each class's real images (whose means the statistics hold) and as many
    blank ones; herding keeps real images only, `ipc` of each class, in its own order."""
    from gendd.stored_herding import herded

    ds = toy_dataset(per_class=8)
    stats = record_statistics(ds, draws=4, batch_real=8, components=4, seed=3)
    blank = torch.zeros_like(ds.train_images)
    images = torch.cat([ds.train_images, blank])
    labels = torch.cat([ds.train_labels, ds.train_labels])
    keep = herded(stats, images, labels, ipc=3)
    assert labels[keep].tolist() == [c for c in range(ds.num_classes) for _ in range(3)]
    assert len(set(keep.tolist())) == len(keep) and bool((keep < len(ds.train_labels)).all())


def test_generate_with_stored_refinement_reads_no_data_set(tiny_run, monkeypatch, tmp_path):
    """Every way gendd reads a data set raises: the set is still sampled and refined, from the
    run's files alone, and the refinement moved the sampled images."""
    import gendd.data
    from gendd.data.registry import DatasetInfo

    def no_data(*args, **kwargs):
        raise AssertionError("a data set was looked for")

    monkeypatch.setattr(gendd.data, "load_dataset", no_data)
    for method in ("locate", "find"):  # every loader finds its files through these
        monkeypatch.setattr(DatasetInfo, method, no_data)
    assert (tiny_run / FILE).is_file()
    out = tmp_path / "g.safetensors"
    result = CliRunner().invoke(main, ["generate", str(tiny_run), "--ipc", "2", "--refine",
                                       "stored", "--out", str(out)])
    assert result.exit_code == 0, result.output
    refined, sampled = load_set(out), load_set(tmp_path / "g.sampled.safetensors")
    assert refined.metadata["refine"]["method"] == "stored"
    # the metadata holds the settings the refinement ran with: the mean and regression terms
    ran, defaults = refined.metadata["refine"], RefineConfig()
    assert ran["lr"] == pytest.approx(defaults.lr * 2 / 10)
    assert ran["regression"] == pytest.approx(defaults.regression * 10 / 2)
    assert (ran["mmd"], ran["discrimination"]) == (0.0, 0.0)
    assert refined.metadata["sampler"]["init"] == "herding"
    assert refined.metadata["sampler"]["denoiser"] == "base"  # refined: the base one's start
    assert sampled.metadata["sampler"]["candidates"] == 4
    assert torch.equal(refined.labels, sampled.labels)
    assert (refined.images.float() - sampled.images.float()).abs().max() >= 8

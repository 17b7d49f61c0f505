"""Baselines: shapes, class order, determinism, herding's choice, DM's quantisation, the CLI."""

import pytest
import torch
from click.testing import CliRunner

from gendd.baselines import (distribution_matching, herding, herding_order, random_real,
                             trained_snapshots)
from gendd.cli import main
from gendd.data.base import ImageDataset
from gendd.errors import GenddError
from gendd.sets import load_set


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("GENDD_COMPILE", "0")


def _dataset(per_class=12, classes=3, size=28, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = per_class * classes
    y = torch.randperm(n, generator=g) % classes  # shuffled, as real data
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset("toy", tuple(f"c{i}" for i in range(classes)), x, y, x[:6], y[:6],
                        (0.5,) * channels, (0.25,) * channels)


def _check_layout(s, ds, ipc):
    assert s.images.dtype == torch.uint8 and s.images.shape == (ipc * 3, 1, 28, 28)
    assert s.labels.tolist() == sorted(s.labels.tolist())  # ordered class by class
    assert torch.bincount(s.labels).tolist() == [ipc] * 3
    assert s.metadata["dataset"] == "toy" and s.metadata["ipc"] == ipc


def test_random_real_takes_real_images_per_class_deterministically():
    ds = _dataset()
    s = random_real(ds, 4, seed=3)
    _check_layout(s, ds, 4)
    idx = torch.tensor(s.metadata["train_indices"])
    assert len(set(idx.tolist())) == 12
    assert torch.equal(ds.train_images[idx], s.images) and torch.equal(ds.train_labels[idx],
                                                                       s.labels)
    assert random_real(ds, 4, 3).metadata == s.metadata
    assert random_real(ds, 4, 4).metadata["train_indices"] != s.metadata["train_indices"]
    with pytest.raises(GenddError, match="fewer than --ipc"):
        random_real(ds, 13, 0)


def test_herding_order_tracks_the_mean():
    f = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1.0, 1.0], [-1.0, -1.0], [5.0, 5.0]])
    # the mean is (3, 1): first the closest point, then the one that best restores the mean
    order = herding_order(f, 3).tolist()
    assert order[0] == 2 and len(set(order)) == 3
    mean_err = lambda idx: float(((f[idx].mean(0) - f.mean(0)) ** 2).sum())
    assert mean_err(order[:2]) <= min(mean_err([order[0], j]) for j in range(5) if j != order[0])


def test_herding_set_layout_and_determinism():
    ds = _dataset()
    s = herding(ds, 3, seed=0, features="random")
    _check_layout(s, ds, 3)
    assert herding(ds, 3, seed=0, features="random").metadata == s.metadata
    t = herding(ds, 2, seed=0, features="trained", feature_epochs=0, feature_train_per_class=4)
    _check_layout(t, ds, 2)


def test_dm_learns_from_real_initialisation_and_quantises():
    ds = _dataset(per_class=8)
    s0, f0 = distribution_matching(ds, 2, seed=1, iterations=0, batch_real=4, return_float=True)
    s, f = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True)
    _check_layout(s, ds, 2)
    init = random_real(ds, 2, 1)
    assert torch.equal(s.labels, init.labels)
    assert not torch.equal(f, f0)  # the images moved
    expect = ((f * 0.25 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(s.images, expect)
    s2 = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4)
    assert torch.equal(s2.images, s.images)


def test_dm_projected_every_step_keeps_its_images_in_the_pixel_range():
    # The toy data's random pixels reach 0 and 255 (normalised -2 and 2): a large rate pushes
    # DM's free images past them, the projected ones stop at them.
    ds = _dataset(per_class=8)
    kw = dict(seed=1, iterations=3, batch_real=4, lr_img=100.0, return_float=True)
    _, free = distribution_matching(ds, 2, **kw)
    s, kept = distribution_matching(ds, 2, range_projection="every-step", **kw)
    assert free.min() < -2 or free.max() > 2
    assert kept.min() >= -2 and kept.max() <= 2 and not torch.equal(kept, free.clamp(-2, 2))
    assert torch.equal(s.images, ((kept * 0.25 + 0.5) * 255).round().to(torch.uint8))
    assert s.metadata["range_projection"] == "every-step"
    with pytest.raises(GenddError, match="range_projection"):
        distribution_matching(ds, 2, seed=1, iterations=1, range_projection="never")


def test_trained_snapshots_follow_one_training_run_per_network():
    ds = _dataset(per_class=8)
    x = ds.normalize(ds.train_images)
    snaps = trained_snapshots(ds, x, 2, 4, 2, torch.Generator().manual_seed(0), batch_size=6,
                              probe_size=10)
    assert len(snaps) == 4  # 2 networks x (4 steps / a snapshot every 2)
    assert all(0.0 <= acc <= 1.0 for _, acc in snaps)
    w = [state["classifier.weight"] for state, _ in snaps]
    assert not torch.equal(w[0], w[1])  # the same network, two steps further
    again = trained_snapshots(ds, x, 2, 4, 2, torch.Generator().manual_seed(0), batch_size=6,
                              probe_size=10)
    assert all(torch.equal(a["classifier.weight"], b["classifier.weight"])
               for (a, _), (b, _) in zip(snaps, again))


def test_dm_with_trained_networks_and_the_class_term():
    ds = _dataset(per_class=8)
    pool = dict(trained_nets=1, trained_steps=2, snapshot_every=1, trained_share=1.0,
                batch_real=4, iterations=2)
    plain = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4)
    idm = distribution_matching(ds, 2, seed=1, **pool)
    idm_ce = distribution_matching(ds, 2, seed=1, ce_weight=5.0, **pool)
    _check_layout(idm_ce, ds, 2)
    assert not torch.equal(idm.images, plain.images)
    # The class term acts only with a snapshot: a difference shows the snapshots were used.
    assert not torch.equal(idm_ce.images, idm.images)
    assert torch.equal(distribution_matching(ds, 2, seed=1, ce_weight=5.0, **pool).images,
                       idm_ce.images)
    assert idm_ce.metadata["trained_nets"] == 1 and idm_ce.metadata["ce_weight"] == 5.0
    assert "trained_nets" not in plain.metadata


def test_cli_writes_a_set_and_refuses_to_overwrite(tmp_path, monkeypatch):
    ds = _dataset()
    monkeypatch.setattr("gendd.data.load_dataset", lambda name, root=None: ds)
    out = tmp_path / "r.safetensors"
    args = ["baseline", "random", "--dataset", "toy", "--ipc", "2", "--seed", "1",
            "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert load_set(out).labels.tolist() == [0, 0, 1, 1, 2, 2]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--force" in res.output
    assert CliRunner().invoke(main, args + ["--force"]).exit_code == 0


def test_cli_passes_dm_loss_terms_through(tmp_path, monkeypatch):
    monkeypatch.setattr("gendd.data.load_dataset", lambda name, root=None: _dataset(per_class=8))
    out = tmp_path / "dm.safetensors"
    res = CliRunner().invoke(main, ["baseline", "dm", "--dataset", "toy", "--ipc", "2", "-q",
                                    "--iterations", "1", "--batch-real", "4", "--out", str(out),
                                    "--mmd-weight", "5", "--attention-weight", "6",
                                    "--discrimination-weight", "7", "--regression-weight", "8"])
    assert res.exit_code == 0, res.output
    meta = load_set(out).metadata
    assert (meta["mmd_weight"], meta["attention_weight"], meta["discrimination_weight"],
            meta["regression_weight"]) == (5.0, 6.0, 7.0, 8.0)


def test_dm_refines_a_given_set_and_refuses_one_with_the_wrong_layout():
    from gendd.errors import GenddError
    from gendd.sets import DistilledSet

    ds = _dataset(per_class=8)
    start = random_real(ds, 2, seed=5)
    shuffled = DistilledSet(start.images.flip(0), start.labels.flip(0), {"generator": "test"})
    moved = distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, init=shuffled)
    assert moved.metadata["init"] == "test" and torch.equal(moved.labels, start.labels)
    target = shuffled.sorted_by_class().images.float()
    other = random_real(ds, 2, seed=6).images.float()
    assert not torch.equal(moved.images.float(), target)  # it learnt ...
    # ... from the given images (in class order), not from random real ones
    assert (moved.images.float() - target).abs().mean() < (moved.images.float() - other).abs().mean()
    with pytest.raises(GenddError, match="2 images of each of the 3 classes"):
        distribution_matching(ds, 2, seed=1, iterations=0, init=random_real(ds, 3, seed=5))


def test_compiled_dm_computes_the_eager_dm(monkeypatch):
    """DM's compiled embedding (one network re-drawn in place) moves the images as the eager
    one does, up to rounding, and really is compiled (no fallback to eager)."""
    import warnings

    ds = _dataset(per_class=8)
    start = ds.normalize(random_real(ds, 2, 1).images)
    _, eager = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4,
                                     return_float=True)
    monkeypatch.setenv("GENDD_COMPILE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, fused = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4,
                                         return_float=True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    moved, moved_fused = (eager - start).flatten(), (fused - start).flatten()
    assert moved.norm() > 0.1
    assert torch.nn.functional.cosine_similarity(moved, moved_fused, dim=0) > 0.95


def test_convnet_maps_are_its_block_outputs():
    from gendd.evaluate import challenge_protocol, init_network

    ds = _dataset()
    net = init_network(challenge_protocol(), ds, 0).eval()
    x = torch.randn(2, 1, 28, 28)
    flat, maps = net.embed_with_maps(x)
    assert torch.equal(flat, net.embed(x))
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 16, 16), (128, 8, 8), (128, 4, 4)]


def test_dm_loss_terms_change_the_images():
    ds = _dataset(per_class=8)
    _, plain = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True)
    s, att = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True,
                                   attention_weight=100.0)
    assert s.metadata["attention_weight"] == 100.0
    assert torch.isfinite(att).all() and not torch.allclose(att, plain)
    _, mmd = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True,
                                   mmd_weight=100.0)
    assert torch.isfinite(mmd).all() and not torch.allclose(mmd, plain)
    s, disc = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True,
                                    discrimination_weight=100.0)
    assert s.metadata["discrimination_weight"] == 100.0 and "discrimination_weight" not in \
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4).metadata
    assert torch.isfinite(disc).all() and not torch.allclose(disc, plain)
    s, krr = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True,
                                   regression_weight=10.0, regression_ridge=0.1)
    assert (s.metadata["regression_weight"], s.metadata["regression_ridge"]) == (10.0, 0.1)
    assert torch.isfinite(krr).all() and not torch.allclose(krr, plain)
    s, two = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True,
                                   nets_per_iteration=2)
    assert s.metadata["nets_per_iteration"] == 2 and "nets_per_iteration" not in \
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4).metadata
    assert torch.isfinite(two).all() and not torch.allclose(two, plain)
    s, wide = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True,
                                    embedding_nets=2, attention_weight=100.0)
    assert s.metadata["embedding_nets"] == 2 and "embedding_nets" not in \
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4).metadata
    assert torch.isfinite(wide).all() and not torch.allclose(wide, att)
    s, blocks = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4,
                                      return_float=True, regression_weight=10.0,
                                      regression_ridge=0.1, feature_blocks="all")
    assert s.metadata["feature_blocks"] == "all" and "feature_blocks" not in \
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4).metadata
    assert torch.isfinite(blocks).all() and not torch.allclose(blocks, krr)  # krr: same terms
    with pytest.raises(GenddError, match="unknown feature_blocks 'first' \\(last or all\\)"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, feature_blocks="first")
    with pytest.raises(GenddError, match="every block's features needs a ConvNet"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, model="vgg11",
                              feature_blocks="all")
    with pytest.raises(GenddError, match="embedding_nets must be at least 1, not 0"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, embedding_nets=0)
    with pytest.raises(GenddError, match="take one embedding network"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, embedding_nets=2,
                              trained_nets=1)
    s, cosine = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4,
                                      return_float=True, lr_schedule="cosine")
    assert s.metadata["lr_schedule"] == "cosine" and not torch.allclose(cosine, plain)
    # ... which starts at the full rate: a single step moves the pixels as the constant rate
    one_step = [distribution_matching(ds, 2, seed=1, iterations=0, batch_real=4,
                                      return_float=True, lr_schedule=sched)[1]
                for sched in ("constant", "cosine")]
    assert torch.equal(*one_step)
    s, shared = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4,
                                      return_float=True, augmentation="shared")
    assert s.metadata["augmentation"] == "shared" and not torch.allclose(shared, plain)
    with pytest.raises(GenddError, match="unknown learning rate schedule 'step'"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, lr_schedule="step")
    with pytest.raises(GenddError, match="unknown augmentation 'none'"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, augmentation="none")
    with pytest.raises(GenddError, match="needs a ConvNet"):
        distribution_matching(ds, 2, seed=1, iterations=1, batch_real=4, model="vgg11",
                              attention_weight=1.0)


def test_shared_augmentation_transforms_every_class_alike():
    # Every class has the same real images and starts from the same two synthetic ones, so
    # DM's per-class mean term moves each class alike unless their DSA draws differ.
    from gendd.sets import DistilledSet

    ds = _dataset()
    ds.train_images[:] = ds.train_images[0]
    start = _dataset(seed=1).train_images[:2].repeat(3, 1, 1, 1)
    init = DistilledSet(start, torch.arange(3).repeat_interleave(2), {"generator": "test"})
    for augmentation, alike in (("shared", True), ("per-class", False)):
        _, f = distribution_matching(ds, 2, seed=1, iterations=3, batch_real=4, init=init,
                                     return_float=True, augmentation=augmentation)
        classes = f.view(3, 2, *f.shape[1:])
        assert not torch.allclose(classes[0], ds.normalize(start[:2]))  # DM moved them
        assert all(torch.allclose(classes[0], c, atol=1e-5) for c in classes[1:]) == alike


def test_dm_with_the_model_pool_term_moves_the_pixels_and_records_it():
    ds = _dataset()
    _, plain = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4, return_float=True)
    s, pooled = distribution_matching(ds, 2, seed=1, iterations=2, batch_real=4,
                                      return_float=True, pool_weight=10.0, pool_size=2,
                                      pool_steps=3, pool_real=2, regression_weight=1.0)
    assert {k: s.metadata[k] for k in ("pool_weight", "pool_size", "pool_steps", "pool_real")} \
        == {"pool_weight": 10.0, "pool_size": 2, "pool_steps": 3, "pool_real": 2}
    assert torch.isfinite(pooled).all() and not torch.allclose(pooled, plain)


def test_model_pool_learns_the_set_and_redraws_the_old():
    from gendd.baselines import SyntheticModelPool
    from gendd.evaluate import challenge_protocol

    ds = _dataset()
    images, labels = ds.normalize(ds.train_images[:6]), ds.train_labels[:6].long()
    pool = SyntheticModelPool(challenge_protocol(), ds, 2, 20, torch.Generator().manual_seed(0),
                              torch.device("cpu"), "none")
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(pool.nets[1](images), labels)
    for _ in range(20):
        pool.step(1, images, labels)
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(pool.nets[1](images), labels)
        assert after < before  # trained on the set it is given
        assert pool.ages == [0, 20]
    pool.step(1, images, labels)  # 20 steps taken: re-drawn, then one step from random
    assert pool.ages == [0, 1]
    with torch.no_grad():  # what it learnt is gone: the set's loss is back near a random net's
        redrawn = torch.nn.functional.cross_entropy(pool.nets[1](images), labels)
    assert redrawn > (before + after) / 2


def test_cli_refuses_dm_options_for_other_methods(tmp_path, monkeypatch):
    monkeypatch.setattr("gendd.data.load_dataset", lambda name, root=None: _dataset())
    res = CliRunner().invoke(main, ["baseline", "random", "--dataset", "toy", "--ipc", "1",
                                    "--out", str(tmp_path / "r.safetensors"),
                                    "--attention-weight", "10"])
    assert res.exit_code == 2 and "options of dm only" in res.output

"""Quality guards that can fail (issue 38): what gendd produces must be measurably better than
chance and than random real images, not merely `0 <= accuracy <= 100`.

- The committed canonical sets (results/fashion-mnist/ipc{1,10,50}.safetensors) load with the
  right shapes and class counts, and, as nearest-class-mean / 1-nearest-neighbour classifiers
  (no training, deterministic), score the real test set far above chance and above random real
  images of the same size.
- The committed IPC 10 set beats a random-real IPC 10 set under a shortened challenge protocol.
- A `tiny` end-to-end run (`gendd distill --preset tiny`) samples and writes sets that beat
  chance by a calibrated margin under a shortened protocol on the real test set.

Every margin below was measured (the figures are in each test's docstring) and chosen from the
spread seen, so that a healthy tree passes on any machine while a distiller or evaluator that
has stopped producing information fails. The slow ones are `slow` (they still run in CI)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gendd.baselines import random_real
from gendd.cli import main
from gendd.data import load_dataset
from gendd.data.registry import dataset_info
from gendd.evaluate import challenge_protocol, evaluate_set
from gendd.sets import DistilledSet, load_set

RESULTS = Path(__file__).resolve().parents[1] / "results" / "fashion-mnist"
CLASSES = 10


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    # The compiled evaluator is the same function; compiling would cost more than it saves in
    # these short trainings.
    monkeypatch.setenv("GENDD_COMPILE", "0")


@pytest.fixture(scope="module")
def fashion():
    """The real Fashion-MNIST (60000 + 10000 images), or a skip saying why. Only a missing
    data set skips: a data set that is there but fails to load fails the test."""
    if dataset_info("fashion-mnist").locate() is None:
        pytest.skip("the real Fashion-MNIST is not installed (Debian package fashion-mnist, "
                    "/usr/share/datasets/fashion-mnist, or $GENDD_DATA/fashion-mnist): the "
                    "quality guards score sets on its test set")
    return load_dataset("fashion-mnist")


def _committed(ipc: int) -> DistilledSet:
    return load_set(RESULTS / f"ipc{ipc}.safetensors")


# ---------------------------------------------------------------------------------------------
# The committed sets: files, and a training-free check of what they hold


@pytest.mark.parametrize("ipc", [1, 10, 50])
def test_committed_sets_load_with_the_right_shapes_and_counts(ipc):
    s = _committed(ipc)
    assert s.images.shape == (CLASSES * ipc, 1, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.dtype == torch.int64
    # ordered class by class, ipc images each
    assert s.labels.tolist() == [c for c in range(CLASSES) for _ in range(ipc)]
    assert s.metadata["dataset"] == "fashion-mnist" and s.metadata["ipc"] == ipc
    # real images, not a constant or saturated tensor: every image has contrast, and no two
    # images of a class are the same
    flat = s.images.flatten(1).float()
    assert bool((flat.amax(1) - flat.amin(1) > 100).all())
    assert 0.05 < float(flat.mean()) / 255 < 0.6
    for c in range(CLASSES):
        x = flat[s.labels == c]
        assert len(torch.unique(x, dim=0)) == ipc


def _nearest_mean_accuracy(s: DistilledSet, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    x = s.images.flatten(1).float() / 255
    means = torch.stack([x[s.labels == c].mean(0) for c in range(CLASSES)])
    return 100 * float((torch.cdist(test_x, means).argmin(1) == test_y).double().mean())


def _nearest_neighbour_accuracy(s: DistilledSet, test_x: torch.Tensor,
                                test_y: torch.Tensor) -> float:
    x = s.images.flatten(1).float() / 255
    return 100 * float((s.labels[torch.cdist(test_x, x).argmin(1)] == test_y).double().mean())


# ipc: (classifier, floor for the committed set: above the best of 10 random-real draws)
TRAINING_FREE = {
    1: (_nearest_mean_accuracy, 65.0),
    10: (_nearest_neighbour_accuracy, 72.0),
    50: (_nearest_neighbour_accuracy, 75.0),
}


@pytest.mark.parametrize("ipc", [1, 10, 50])
def test_committed_sets_classify_the_test_set_without_training(fashion, ipc):
    """Each committed set used as a classifier with no training at all (pixels in [0, 1]): at
    IPC 1 nearest class mean, at IPC 10 and 50 the nearest image's label, on all 10000 test
    images. Deterministic: measured 69.32 % (IPC 1), 75.13 % (10), 77.82 % (50); ten random-real
    sets of the same size (`random_real`, seeds 0-9) scored 43.2-53.9 %, 59.4-66.7 % and
    70.4-73.0 %. Floors: 65, 72 and 75 %, above every random draw; and the set must beat the
    seed-0 random-real set by 3 points (measured +22.7, +12.4, +5.9)."""
    test_x = fashion.test_images.flatten(1).float() / 255
    classify, floor = TRAINING_FREE[ipc]
    ours = classify(_committed(ipc), test_x, fashion.test_labels)
    random = classify(random_real(fashion, ipc, 0), test_x, fashion.test_labels)
    print(f"IPC {ipc}: committed {ours:.2f} %, random real (seed 0) {random:.2f} %")
    assert ours >= floor
    assert ours - random >= 3.0


# ---------------------------------------------------------------------------------------------
# The committed IPC 10 set against random real images, under the evaluator

SHORT_EPOCHS = 30
SHORT_TEST = 1000  # a fixed subset (seed 0) of the 10000 test images
MARGIN_VS_RANDOM = 1.0  # points
FLOOR_COMMITTED = 70.0  # %


@pytest.mark.slow
def test_committed_ipc10_beats_random_real_under_a_short_protocol(fashion):
    """The committed IPC 10 set and the seed-0 random-real IPC 10 set, each trained for 30
    epochs (31 passes; the full protocol's 1000 give ~86 % against ~77 %), one round, seed 0,
    scored on a fixed 1000-image subset of the real test set.

    Measured (CPU, fp32), this very comparison with round seeds 0-5 (the same two sets and test
    images; only the network's initialisation, the batch order and the augmentation vary, which
    is what changes from one machine's arithmetic to another's): committed 73.8-75.3 %, random
    real 69.7-71.4 %, difference 5.1, 3.8, 2.4, 4.4, 4.1, 4.6 points (mean 4.1, std 0.9). Longer
    runs widen the gap (40 epochs: 3.9-5.9, mean 4.7; 50 epochs: 4.6-6.4, mean 5.3) at 1.3x and
    1.6x the time; with the random draw and the test subset varied too, 20 epochs gave 2.4-6.8
    and 10 epochs 1.6-6.0. Margin: 1.0 point (3.3 standard deviations below the mean, 1.4 below
    the lowest of the six); floor for the committed set: 70 %. A set no better than random real
    images, or an evaluator that no longer learns from the images, fails."""
    test = fashion.subset(test_count=SHORT_TEST, seed=0)
    p = challenge_protocol(epochs=SHORT_EPOCHS, rounds=1)
    ours = evaluate_set(_committed(10), test, p, seed=0, progress=False)["accuracy"]["mean"]
    rand = evaluate_set(random_real(fashion, 10, 0), test, p, seed=0,
                        progress=False)["accuracy"]["mean"]
    print(f"{SHORT_EPOCHS} epochs: committed IPC 10 {ours:.2f} %, random real {rand:.2f} %")
    assert ours - rand >= MARGIN_VS_RANDOM, (ours, rand)
    assert ours >= FLOOR_COMMITTED, (ours, rand)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end run


TINY_EPOCHS = 10
TINY_FLOOR = 35.0  # %, the distilled (refined) set; chance is 10
TINY_FLOOR_SAMPLED = 30.0  # %, the generator's own samples before refinement


@pytest.mark.slow
def test_a_tiny_end_to_end_run_beats_chance(fashion, small_fashion, tmp_path, request):
    """`gendd distill --preset tiny --ipc 1` on the 200-image Fashion-MNIST subset of
    `small_fashion` (its model trained by the shared `tiny_run` fixture, copied here, so that
    distill finds the training done and samples, refines and reports). Both the set it writes
    and the generator's samples it refined (kept beside it as `ipc1.sampled.safetensors`) are
    trained on for 10 epochs, one round, seed 0, and scored on a fixed 1000-image subset of the
    real test set. Chance is 10 %. Both are checked because at IPC 1 the tiny preset's 2 DM
    iterations alone turn pure noise into a 53 % set: a sampler that returns noise is visible
    only in the samples.

    Measured (CPU): tiny runs trained with seeds 0, 1 and 2 (autoencoder, denoiser, sampling
    from k-means prototypes, 2 DM iterations, all redone), each scored with round seeds 0-2 on
    the test subsets of seeds 0-2: the sampled sets 41.7-53.5 % (run 0: 50.9, 53.5, 49.0;
    run 1: 41.7, 47.2, 45.8; run 2: 53.1, 51.9, 46.6), the refined sets 50.0-64.8 % (51.2,
    54.9, 50.0; 61.2, 60.4, 64.8; 58.2, 57.0, 51.3); the IPC 10 sets 58.8-62.7 %. Floors: 30 %
    for the samples and 35 % for the set (chance + 20 and + 25 points; 11.7 and 15 below the
    lowest measured). Broken on purpose in a scratch copy, this test failed with the sampler
    returning noise (samples 4.3 %), blank images (set 22.4 %), the refinement returning noise
    (11.6 %) and the set's images shuffled across classes (2.2 %)."""
    tiny_run = request.getfixturevalue("tiny_run")  # after `fashion`: no training to skip
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock"))
    r = CliRunner().invoke(main, ["distill", "--dataset", "fashion-mnist", "--data-root",
                                  str(small_fashion), "--preset", "tiny", "--ipc", "1",
                                  "--no-eval", "--out", str(run)])
    assert r.exit_code == 0, r.output
    test = fashion.subset(test_count=SHORT_TEST, seed=0)
    p = challenge_protocol(epochs=TINY_EPOCHS, rounds=1)
    acc = {}
    for name in ("ipc1.sampled", "ipc1"):
        s = load_set(run / "distilled" / f"{name}.safetensors")
        assert s.labels.tolist() == list(range(CLASSES))
        acc[name] = evaluate_set(s, test, p, seed=0, progress=False)["accuracy"]["mean"]
    print(f"tiny run, IPC 1, {TINY_EPOCHS} epochs: samples {acc['ipc1.sampled']:.2f} %, "
          f"refined set {acc['ipc1']:.2f} % (chance 10 %)")
    assert acc["ipc1.sampled"] >= TINY_FLOOR_SAMPLED, acc
    assert acc["ipc1"] >= TINY_FLOOR, acc

import numpy as np
import pytest
from scipy import linalg

from gendd.sample_quality import frechet_distance


def textbook_frechet_distance(a, b):
    """The usual formulation: covariances and scipy's matrix square root of their product."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


@pytest.mark.parametrize("n, m, d", [(200, 300, 16),   # more samples than dimensions
                                     (40, 300, 64),    # one set smaller than d: the n x n path
                                     (300, 40, 64)])   # and the other way round
def test_frechet_distance_equals_the_textbook_formula(n, m, d):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(m, d)) * 2 + 0.5
    assert frechet_distance(a, b) == pytest.approx(textbook_frechet_distance(a, b), rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    a = np.random.default_rng(1).normal(size=(50, 128))
    assert abs(frechet_distance(a, a)) < 1e-5  # vs tr(S) + tr(S) = 256
    assert frechet_distance(a, a + 1.0) == pytest.approx(128.0, rel=1e-6)

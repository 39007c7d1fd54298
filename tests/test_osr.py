import numpy as np
import pytest

from osd.osr.mahalanobis import MahalanobisScorer
from osd.osr.thresholds import AcceptanceThreshold


def test_mahalanobis_distance_of_a_known_shift():
    rng = np.random.default_rng(0)
    d = 5
    X = np.concatenate([rng.normal(0, 1, (4000, d)), rng.normal(0, 1, (4000, d)) + 10])
    y = np.r_[np.zeros(4000, int), np.ones(4000, int)]
    s = MahalanobisScorer(covariance="empirical", normalize="none").fit(X, y)
    assert s.fit(X, y) is s
    np.testing.assert_allclose(s.covariance_, np.eye(d), atol=0.1)
    probe = np.array([[3.0, 0, 0, 0, 0], [10, 10, 10, 10, 10]])
    np.testing.assert_allclose(s.score_samples(probe), [9.0, 0.0], atol=0.5)
    assert list(s.predict(probe)) == [0, 1]


def test_shrinkage_is_stable_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 100))
    y = np.repeat([0, 1], 10)
    s = MahalanobisScorer("ledoitwolf", "l2").fit(X, y)
    scores = s.score_samples(rng.normal(size=(5, 100)))
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0)


def test_tau_at_the_validation_quantile():
    scores = np.arange(1, 101, dtype=float)
    t = AcceptanceThreshold(0.95).fit(scores)
    assert t.threshold_ == pytest.approx(np.quantile(scores, 0.95))
    assert t.accepted_fraction_ == pytest.approx(0.95)
    assert t.predict(np.array([95.0, 96.0])).tolist() == [False, True]

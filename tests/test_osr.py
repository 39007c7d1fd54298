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


def test_tau_is_the_conservative_order_statistic():
    scores = np.arange(1, 101, dtype=float)
    t = AcceptanceThreshold(0.95).fit(scores)
    assert t.rank_ == 96 and t.threshold_ == 96.0  # ceil(101 * 0.95) = 96, not the linear quantile 95.05
    assert t.accepted_fraction_ == pytest.approx(0.96)
    assert t.predict(np.array([96.0, 96.5])).tolist() == [False, True]
    lo, hi = t.acceptance_ci_
    assert lo < 0.96 < hi and not t.small_sample_


@pytest.mark.parametrize("n", list(range(1, 60)) + [100, 240, 1000])
@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_order_statistic_accepts_at_least_the_target(n: int, target: float):
    import warnings

    scores = np.random.default_rng(n).normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = AcceptanceThreshold(target).fit(scores)
    assert np.mean(scores <= t.threshold_) >= target or t.rank_ == n
    if n < 10:  # far too few scores for the target: flagged
        assert t.small_sample_


def test_order_statistic_covers_new_samples_on_average():
    # conformal guarantee: P(new score <= threshold) >= target, checked by simulation at n = 20
    rng = np.random.default_rng(0)
    import warnings

    hits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2000):
            s = rng.normal(size=21)
            hits.append(s[20] <= AcceptanceThreshold(0.9).fit(s[:20]).threshold_)
    assert np.mean(hits) >= 0.9 - 0.015  # linear interpolation gives about 0.88 here


def test_small_calibration_set_warns():
    from osd.errors import OsdWarning

    with pytest.warns(OsdWarning, match="only 21 scores"):
        t = AcceptanceThreshold(0.95, "PatchCore threshold").fit(np.arange(21.0))
    assert t.small_sample_ and t.summary()["n"] == 21


def test_one_block_is_the_plain_distance():
    from osd.osr.mahalanobis import MultiBlockMahalanobis

    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(60, 6)), np.repeat([0, 1, 2], 20)
    probe = rng.normal(size=(7, 6))
    single = MahalanobisScorer("ledoitwolf", "l2").fit(X, y)
    multi = MultiBlockMahalanobis((), "ledoitwolf", "l2").fit(X, y, X_ref=probe)
    np.testing.assert_allclose(multi.score_samples(probe), single.score_samples(probe))


def test_blocks_are_standardised_on_the_reference_images():
    from sklearn.covariance import LedoitWolf

    from osd.osr.mahalanobis import MultiBlockMahalanobis

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 50)
    small = rng.normal(size=(100, 3)) + y[:, None] * 4
    big = rng.normal(size=(100, 40)) * 5 + y[:, None] * 4
    X = np.hstack([small, big])
    ref = np.hstack([rng.normal(size=(30, 3)), rng.normal(size=(30, 40)) * 5])
    s = MultiBlockMahalanobis((3, 40), "ledoitwolf", "none").fit(X, y, X_ref=ref)

    # the score computed directly with numpy: per block, the smallest squared distance to a class
    # mean under the shared (Ledoit-Wolf) precision; standardised by its mean and sd on ref; averaged
    def raw(train: np.ndarray, probe: np.ndarray) -> np.ndarray:
        means = np.stack([train[y == c].mean(axis=0) for c in (0, 1)])
        prec = np.linalg.inv(LedoitWolf(assume_centered=True).fit(train - means[y]).covariance_)
        return np.min([np.einsum("ij,jk,ik->i", probe - m, prec, probe - m) for m in means], axis=0)

    probe = np.vstack([ref, rng.normal(size=(5, 43)) * 3])
    raw_ref = np.stack([raw(small, ref[:, :3]), raw(big, ref[:, 3:])], axis=1)
    raw_probe = np.stack([raw(small, probe[:, :3]), raw(big, probe[:, 3:])], axis=1)
    expected = ((raw_probe - raw_ref.mean(axis=0)) / raw_ref.std(axis=0)).mean(axis=1)
    np.testing.assert_allclose(s.score_samples(probe), expected, rtol=1e-6)
    # a sample far off in the small block only is still flagged: the big block does not drown it
    far = ref[:1].copy()
    far[0, :3] += 30
    assert s.score_samples(far)[0] > s.score_samples(ref).max()
    with pytest.raises(ValueError, match="widths"):
        MultiBlockMahalanobis((3, 3), "ledoitwolf", "none").fit(X, y)


def test_block_names_follow_the_configuration():
    from osd.osr.features import block_names, stack

    stored = ["layer2_mean", "layer1_mean", "layer1_std", "layer2_std"]
    assert block_names(stored, "penultimate", "mean") == ["penultimate"]
    assert block_names(stored, "multilayer", "mean") == ["layer1_mean", "layer2_mean"]
    assert block_names(stored, "multilayer", "mean_std") == ["layer1_mean", "layer1_std", "layer2_mean", "layer2_std"]
    assert block_names([], "multilayer", "mean") == ["penultimate"]  # a model without residual stages
    x, widths = stack({"a": np.ones((2, 3)), "b": np.zeros((2, 1))}, ["b", "a"])
    assert widths == [1, 3] and x.tolist() == [[0, 1, 1, 1], [0, 1, 1, 1]]


def test_pseudo_open_set_selection_knows_signal_from_noise():
    """Held-out classes are found by a block that separates classes, not by pure noise; ties keep the locked."""
    from osd.osr.selection import VariantSelection, leave_one_class_out_auroc

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 8)) * 6

    def draw(n):
        y = np.repeat(np.arange(4), n)
        return centres[y] + rng.normal(0, 1, (len(y), 8)), y.astype(str)

    (xt, yt), (xv, yv) = draw(40), draw(20)
    signal = leave_one_class_out_auroc(xt, yt, xv, yv, (8,), "ledoitwolf", "none")
    noise = leave_one_class_out_auroc(rng.normal(0, 1, xt.shape), yt, rng.normal(0, 1, xv.shape), yv, (8,),
                                      "ledoitwolf", "none")
    assert set(signal) == {"0", "1", "2", "3"} and min(signal.values()) > 0.95
    assert abs(np.mean(list(noise.values())) - 0.5) < 0.15
    sel = VariantSelection()
    sel.add("penultimate", noise)
    sel.add("multilayer", signal)
    assert sel.select(["penultimate", "multilayer"]).selected_ == "multilayer"
    tie = VariantSelection()
    tie.add("multilayer", signal)
    tie.add("penultimate", signal)
    assert tie.select(["penultimate", "multilayer"]).selected_ == "penultimate"

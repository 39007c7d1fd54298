"""AUROC and FPR@95 intervals right at their edges (issue 48, items 1 and 2): values pinned, and a small
coverage check through the project's own functions that the old intervals fail."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from osd.metrics import metric_intervals
from osd.proportion import clopper_pearson
from osd.ranking_intervals import (
    auroc_interval,
    effective_clopper_pearson,
    fpr_at_tpr_interval,
    fpr_at_tpr_replicates,
    mann_whitney_auc,
)


def test_a_perfect_separation_gets_the_exact_bound_never_zero_width():
    assert auroc_interval(1.0, 72, 72) == [pytest.approx(0.025 ** (1 / 72)), 1.0]
    assert auroc_interval(1.0, 72, 72)[0] == pytest.approx(0.950, abs=5e-4)
    assert auroc_interval(1.0, 360, 18)[0] == pytest.approx(0.815, abs=5e-4)  # the detection demo's 18 good parts
    assert auroc_interval(0.0, 10, 20) == [0.0, pytest.approx(1 - 0.025 ** 0.1)]


def test_newcombe_s_interval_holds_the_estimate_stays_in_range_and_narrows_with_images():
    for auc in (0.5, 0.9, 0.99, 0.9995):
        lo, hi = auroc_interval(auc, 72, 72)
        assert 0.0 < lo < auc < hi < 1.0
    small, large = auroc_interval(0.95, 30, 30), auroc_interval(0.95, 300, 300)
    assert large[1] - large[0] < small[1] - small[0]
    # at 0.5 the score interval is symmetric
    lo, hi = auroc_interval(0.5, 50, 50)
    assert 0.5 - lo == pytest.approx(hi - 0.5)
    assert auroc_interval(0.9, 0, 10) is None and auroc_interval(float("nan"), 5, 5) is None


def test_mann_whitney_auc_counts_ties_half():
    assert mann_whitney_auc(np.array([1.0, 2.0]), np.array([1.0, 0.0])) == pytest.approx(0.875)


def test_the_effective_sample_size_interval_is_clopper_pearson_when_the_variance_is_binomial():
    p, n = 14 / 72, 72
    assert effective_clopper_pearson(p, n, p * (1 - p) / n) == pytest.approx(list(clopper_pearson(14, 72)))
    wider = effective_clopper_pearson(p, n, 2 * p * (1 - p) / n)
    assert wider[0] < clopper_pearson(14, 72)[0] and wider[1] > clopper_pearson(14, 72)[1]
    assert effective_clopper_pearson(0.0, 72, 0.0) == [0.0, pytest.approx(clopper_pearson(0, 72)[1])]


def test_fpr_replicates_match_the_metric_s_own_definition():
    from osd.metrics import fpr_at_tpr

    rng = np.random.default_rng(0)
    k, u = rng.normal(0, 1, 40), rng.normal(2, 1, 30)
    reps = fpr_at_tpr_replicates(k, u, 1, 0)
    rng2 = np.random.default_rng(0)
    ki, ui = rng2.integers(0, 40, (1, 40))[0], rng2.integers(0, 30, (1, 30))[0]
    s = np.r_[k[ki], np.sort(u)[ui]]  # the function draws from the sorted unknowns
    assert reps[0] == pytest.approx(fpr_at_tpr(np.r_[np.zeros(40, bool), np.ones(30, bool)], s))


def test_metric_intervals_gives_both_at_a_perfect_separation():
    true = ["a"] * 36 + ["b"] * 36 + ["x"] * 72
    unk = np.array([t == "x" for t in true])
    score = np.where(unk, 10.0, 0.0) + np.linspace(0, 1, len(true))
    pred = np.where(unk, "unknown", np.array(true, dtype=object))
    ci = metric_intervals(true, pred, pred, score, unk, ["a", "b"], 200, 0)
    assert ci["auroc"] == [pytest.approx(0.950, abs=5e-4), 1.0]
    assert ci["fpr_at_95_tpr"][0] == 0.0 and 0.04 < ci["fpr_at_95_tpr"][1] < 0.06
    assert "fpr_at_95_tpr" not in metric_intervals(true, pred, pred, score, unk, ["a", "b"], 0, 0)


def _coverage(true_fpr: float, n: int, reps: int, seed: int) -> tuple[float, float]:
    """(coverage of fpr_at_tpr_interval, coverage of the fixed-threshold Clopper-Pearson it replaced)."""
    mu = norm.ppf(0.95) - norm.ppf(true_fpr)
    rng = np.random.default_rng(seed)
    new = old = 0
    for r in range(reps):
        k, u = rng.normal(0, 1, n), rng.normal(mu, 1, n)
        lo, hi = fpr_at_tpr_interval(k, u, 300, r)
        new += lo <= true_fpr <= hi
        thr = np.sort(k)[int(np.ceil(0.95 * n)) - 1]
        lo, hi = clopper_pearson(int(np.sum(u <= thr)), n)
        old += lo <= true_fpr <= hi
    return new / reps, old / reps


def test_fpr_at_95_covers_where_the_fixed_threshold_interval_did_not():
    """200 samples of 72 + 72 at a true FPR@95 of 0.20 (binormal): the fixed-threshold count covered ~0.78."""
    new, old = _coverage(0.20, 72, 200, 1)
    assert new >= 0.90 and old <= 0.86


def test_auroc_near_one_covers_and_always_shows_an_interval():
    true, m = 0.999, 72
    mu = np.sqrt(2) * norm.ppf(true)
    rng = np.random.default_rng(2)
    hit = 0
    for _ in range(300):
        p, n = rng.normal(mu, 1, m), rng.normal(0, 1, m)
        lo, hi = auroc_interval(mann_whitney_auc(p, n), m, m)
        assert hi > lo
        hit += lo <= true <= hi
    assert hit / 300 >= 0.93

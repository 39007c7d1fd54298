import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from osd.metrics import fpr_at_tpr, open_set_metrics, oscr


def test_hand_computed_case():
    # 4 known (classes a, b), 2 unknown; score higher = more unknown
    true = ["a", "a", "b", "b", "x", "y"]
    closed = ["a", "b", "b", "b", "a", "b"]
    score = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.4])
    unk = np.array([False, False, False, False, True, True])
    pred = np.where(score > 0.5, "unknown", closed)  # -> a b b unknown unknown b
    m = open_set_metrics(true, pred, closed, score, unk, ["a", "b"])
    assert m["closed_set_accuracy"] == pytest.approx(3 / 4)
    # pairs (unknown > known): 0.8 beats 0.1,0.2,0.3 ; 0.4 beats 0.1,0.2,0.3 -> 6 of 8
    assert m["auroc"] == pytest.approx(6 / 8)
    assert m["auroc"] == pytest.approx(roc_auc_score(unk, score))
    assert m["known_acceptance"] == pytest.approx(3 / 4)
    assert m["unknown_rejection"] == pytest.approx(1 / 2)
    # K+1 truth a a b b unknown unknown vs pred a b b unknown unknown b -> 3 of 6 right
    assert m["open_set_accuracy"] == pytest.approx(3 / 6)
    # per-class F1: a: p=1 r=.5 -> 2/3 ; b: p=1/3 r=1/2 -> 0.4 ; unknown: p=1/2 r=1/2 -> 0.5
    assert m["open_set_macro_f1"] == pytest.approx((2 / 3 + 0.4 + 0.5) / 3)


def test_fpr_at_95_tpr_counts_unknowns_accepted():
    known = np.linspace(0, 1, 100)
    unknown = np.array([0.5, 0.99, 2.0, 3.0])
    score = np.concatenate([known, unknown])
    unk = np.r_[np.zeros(100, bool), np.ones(4, bool)]
    # accepting 95 knowns needs threshold ~0.949: accepts 1 of 4 unknowns (0.5)
    assert fpr_at_tpr(unk, score) == pytest.approx(0.25)


def test_oscr_perfect_and_hand_case():
    assert oscr(np.array([True, True]), np.array([0.1, 0.2]), np.array([0.8, 0.9])) == pytest.approx(1.0)
    # one known misclassified: CCR tops at 0.5 before any unknown is accepted
    assert oscr(np.array([True, False]), np.array([0.1, 0.2]), np.array([0.8, 0.9])) == pytest.approx(0.5)
    # unknown scored below every known: half of the area is lost
    assert oscr(np.array([True, True]), np.array([0.5, 0.6]), np.array([0.1, 0.9])) == pytest.approx(0.5)


def test_encoded_metrics_equal_open_set_metrics():
    import numpy as np

    from osd.metrics import DECISION, RANKING, EncodedResults, open_set_metrics

    rng = np.random.default_rng(3)
    classes = ["a", "b", "c"]
    for trial in range(20):
        n = 60
        unk = rng.random(n) < 0.4
        true = np.array([rng.choice(classes) if not u else "zz" for u in unk], dtype=object)
        closed = np.array([rng.choice(classes) for _ in range(n)], dtype=object)
        score = np.round(rng.normal(size=n) + unk, 1)  # rounded: ties, as real scores can have
        pred = np.where(score > 0.8, "unknown", closed)
        pred[rng.random(n) < 0.1] = "no_defect"
        ref = open_set_metrics(true, pred, closed, score, unk, classes)
        idx = rng.integers(0, n, n) if trial % 2 else np.arange(n)
        ref = open_set_metrics(true[idx], pred[idx], closed[idx], score[idx], unk[idx], classes)
        got = EncodedResults(true, pred, closed, score, unk, classes).metrics(idx, DECISION + RANKING)
        assert set(got) == set(DECISION + RANKING)  # every metric asked for, not only those it chose to return
        for k, v in got.items():
            assert v == pytest.approx(ref[k], abs=1e-12), (k, trial)


def test_bootstrap_intervals_cover_a_known_auroc():
    # two normal score distributions 1 sd apart: AUROC = Phi(1 / sqrt(2)) = 0.7602
    import numpy as np
    from scipy.stats import norm

    from osd.metrics import metric_intervals

    truth = norm.cdf(1 / np.sqrt(2))
    covered = 0
    runs = 60
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        unk = np.r_[np.zeros(120, bool), np.ones(60, bool)]
        score = rng.normal(size=180) + unk
        labels = np.array(["a"] * 180, dtype=object)
        ci = metric_intervals(labels, labels, labels, score, unk, ["a"], n_boot=300, seed=seed)["auroc"]
        covered += ci[0] <= truth <= ci[1]
    assert covered / runs >= 0.85  # nominal 0.95; 60 runs leave room for sampling error

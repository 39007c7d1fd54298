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

"""Open-set metrics over arrays; ``sklearn.metrics`` underneath wherever it has the metric.

Conventions: ``score`` is higher for more unknown; unknown is the positive class for AUROC and
AUPR-out; known is positive for AUPR-in. ``pred`` holds class names, ``"unknown"`` or other
rejection labels (e.g. ``"no_defect"``); an unknown image's true label is ``"unknown"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score, roc_curve

UNKNOWN = "unknown"


def fpr_at_tpr(is_unknown: np.ndarray, score: np.ndarray, tpr_level: float = 0.95) -> float:
    """Fraction of unknowns accepted at the threshold that first accepts ``tpr_level`` of knowns."""
    fpr, tpr, _ = roc_curve(~is_unknown, -score)
    return float(fpr[np.searchsorted(tpr, tpr_level, side="left")])


def oscr(correct_known: np.ndarray, score_known: np.ndarray, score_unknown: np.ndarray) -> float:
    """Area under the correct-classification-rate vs false-positive-rate curve (Dhamija et al.).

    Sweeping the acceptance threshold over all scores: CCR = known images accepted and correctly
    classified / known images; FPR = unknown images accepted / unknown images.
    """
    thresholds = np.unique(np.concatenate([score_known, score_unknown]))
    k_sorted = np.sort(score_known[correct_known])
    u_sorted = np.sort(score_unknown)
    ccr = np.searchsorted(k_sorted, thresholds, side="right") / max(len(score_known), 1)
    fpr = np.searchsorted(u_sorted, thresholds, side="right") / max(len(score_unknown), 1)
    ccr = np.concatenate([[0.0], ccr])
    fpr = np.concatenate([[0.0], fpr])
    return float(np.trapezoid(ccr, fpr))


def open_set_metrics(
    true: Sequence[str],
    pred: Sequence[str],
    closed_pred: Sequence[str],
    score: np.ndarray,
    is_unknown: np.ndarray,
    classes: Sequence[str],
) -> dict[str, float]:
    """Every open-set metric of one approach.

    ``true``: class name for known images, anything for unknown ones (mapped to "unknown").
    ``pred``: the final decision (class, "unknown" or another rejection label).
    ``closed_pred``: the arg-max class, for closed-set accuracy and OSCR.
    """
    true = np.asarray(true, dtype=object)
    pred = np.asarray(pred, dtype=object)
    closed_pred = np.asarray(closed_pred, dtype=object)
    score = np.asarray(score, dtype=np.float64)
    is_unknown = np.asarray(is_unknown, dtype=bool)
    known = ~is_unknown
    true_k1 = np.where(is_unknown, UNKNOWN, true)
    correct = closed_pred[known] == true[known]
    labels = [*classes, UNKNOWN]
    both = known.any() and is_unknown.any()
    return {
        "closed_set_accuracy": float(accuracy_score(true[known], closed_pred[known])) if known.any() else float("nan"),
        "auroc": float(roc_auc_score(is_unknown, score)) if both else float("nan"),
        "aupr_in": float(average_precision_score(known, -score)) if both else float("nan"),
        "aupr_out": float(average_precision_score(is_unknown, score)) if both else float("nan"),
        "fpr_at_95_tpr": fpr_at_tpr(is_unknown, score) if both else float("nan"),
        "known_acceptance": float(np.isin(pred[known], list(classes)).mean()) if known.any() else float("nan"),
        "unknown_rejection": float((pred[is_unknown] == UNKNOWN).mean()) if is_unknown.any() else float("nan"),
        "open_set_accuracy": float(accuracy_score(true_k1, pred)),
        "open_set_macro_f1": float(f1_score(true_k1, pred, labels=labels, average="macro", zero_division=0)),
        "oscr": oscr(correct, score[known], score[is_unknown]) if both else float("nan"),
        "n_known": int(known.sum()),
        "n_unknown": int(is_unknown.sum()),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)

"""Open-set metrics over arrays; ``sklearn.metrics`` underneath wherever it has the metric.

Conventions: ``score`` is higher for more unknown; unknown is the positive class for AUROC and
AUPR-out; known is positive for AUPR-in. ``pred`` holds class names, ``"unknown"`` or other
rejection labels (e.g. ``"no_defect"``); an unknown image's true label is ``"unknown"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, auc, average_precision_score, f1_score, roc_auc_score, roc_curve

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
    return float(auc(fpr, ccr))


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


# Metrics with bootstrap intervals; ranking metrics need a score, the rest only decisions.
RANKING = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "oscr")
DECISION = ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy", "open_set_macro_f1")


def bootstrap(metric_fn: Callable[[np.ndarray], dict[str, float]], is_unknown: np.ndarray, n_boot: int = 1000,
              seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of every value ``metric_fn(indices)`` returns.

    Resampling is stratified: known and unknown images are drawn with replacement within their own
    group, so every replicate has the test set's known/unknown mix. ``metric_fn`` receives the
    drawn indices; for a paired comparison it computes both approaches on the same indices.
    """
    is_unknown = np.asarray(is_unknown, dtype=bool)
    known, unknown = np.flatnonzero(~is_unknown), np.flatnonzero(is_unknown)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(known, len(known)) if len(known) else known,
                              rng.choice(unknown, len(unknown)) if len(unknown) else unknown])
        for k, v in metric_fn(idx).items():
            draws.setdefault(k, []).append(v)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for k, v in draws.items():
        a = np.asarray(v, dtype=float)
        a = a[np.isfinite(a)]
        out[k] = [float(np.percentile(a, lo)), float(np.percentile(a, hi))] if a.size else [float("nan")] * 2
    return out


def metric_intervals(true: Sequence[str], pred: Sequence[str], closed_pred: Sequence[str], score: np.ndarray | None,
                     is_unknown: np.ndarray, classes: Sequence[str], n_boot: int = 1000, seed: int = 0
                     ) -> dict[str, list[float]]:
    """Stratified bootstrap 95% intervals of :func:`open_set_metrics` (ranking metrics only with a score)."""
    true, pred, closed_pred = (np.asarray(a, dtype=object) for a in (true, pred, closed_pred))
    is_unknown = np.asarray(is_unknown, dtype=bool)
    s = np.zeros(len(true)) if score is None else np.asarray(score, dtype=float)
    keep = DECISION + (RANKING if score is not None else ())

    def fn(idx: np.ndarray) -> dict[str, float]:
        m = open_set_metrics(true[idx], pred[idx], closed_pred[idx], s[idx], is_unknown[idx], classes)
        return {k: m[k] for k in keep}

    return bootstrap(fn, is_unknown, n_boot, seed)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)

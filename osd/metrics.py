"""Open-set metrics over arrays; ``sklearn.metrics`` underneath wherever it has the metric.

Conventions: ``score`` is higher for more unknown; unknown is the positive class for AUROC and
AUPR-out; known is positive for AUPR-in. ``pred`` holds class names, ``"unknown"`` or other
rejection labels (e.g. ``"no_defect"``); an unknown image's true label is ``"unknown"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, auc, average_precision_score, f1_score, roc_auc_score, roc_curve

from osd.decide import UNKNOWN, softmax  # noqa: F401 - one label, one softmax (float64)
from osd.proportion import rate_intervals


def fpr_at_tpr(is_unknown: np.ndarray, score: np.ndarray, tpr_level: float = 0.95) -> float:
    """Fraction of unknowns accepted at the threshold that first accepts ``tpr_level`` of knowns."""
    # every threshold: dropping "intermediate" collinear points could skip the first one that reaches the level
    fpr, tpr, _ = roc_curve(~is_unknown, -score, drop_intermediate=False)
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


# Metrics with intervals; ranking metrics need a score, the rest only decisions.
RANKING = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "oscr")
DECISION = ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy", "open_set_macro_f1")
# single proportions k / n: an exact Clopper-Pearson interval (osd.proportion), never a percentile bootstrap,
# which has zero width at 0 and 1; AUROC and FPR@95 their own intervals at the edges (osd.ranking_intervals:
# FPR@95's threshold is set by the same test knowns, so it is not a fixed-threshold count); macro-F1, AUPR
# and OSCR keep the bootstrap
RATES = ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy")
EDGE_SAFE = ("auroc", "fpr_at_95_tpr")


def bootstrap_replicates(metric_fn: Callable[[np.ndarray], dict[str, float]], strata: np.ndarray, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, np.ndarray]:
    """Every value ``metric_fn(indices)`` returns, once per stratified bootstrap replicate.

    Resampling is stratified: each group of ``strata`` (known / unknown as a boolean ``is_unknown``,
    or known / unknown / normal as integer kinds) is drawn with replacement within itself, so every
    replicate has the test set's mix. ``metric_fn`` receives the drawn indices; for a paired
    comparison it computes both approaches on the same indices. A replicate may be NaN (a metric
    undefined on that draw); it is kept here, and counted by the callers that use it.
    """
    strata = np.asarray(strata)
    groups = [np.flatnonzero(strata == g) for g in np.unique(strata)]  # False (known) before True (unknown)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups]) if groups else np.zeros(0, np.int64)
        for k, v in metric_fn(idx).items():
            draws.setdefault(k, []).append(v)
    return {k: np.asarray(v, dtype=float) for k, v in draws.items()}


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of the finite replicates (NaN, NaN when there is none)."""
    a = np.asarray(replicates, dtype=float)
    a = a[np.isfinite(a)]
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return [float(np.percentile(a, lo)), float(np.percentile(a, hi))] if a.size else [float("nan")] * 2


def bootstrap(metric_fn: Callable[[np.ndarray], dict[str, float]], strata: np.ndarray, n_boot: int = 1000,
              seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of every value ``metric_fn(indices)`` returns (see
    :func:`bootstrap_replicates` for the resampling)."""
    return {k: percentile_interval(v, level) for k, v in bootstrap_replicates(metric_fn, strata, n_boot, seed).items()}


def bootstrap_p_value(replicates: np.ndarray) -> float | None:
    """Two-sided p-value of "the difference is zero" from paired bootstrap replicates of a difference.

    p = 2 * min(share of replicates <= 0, share >= 0), each share counted as (count + 1) / (B + 1) so
    that a finite number of replicates never claims p = 0; capped at 1. It is the test the percentile
    interval inverts: an interval that excludes zero has at most 2.5% of its replicates on the other
    side. ``None`` without finite replicates (``stats.bootstrap = 0``: not tested).
    """
    a = np.asarray(replicates, dtype=float)
    a = a[np.isfinite(a)]
    if not a.size:
        return None
    below, above = (int(np.sum(a <= 0)) + 1) / (a.size + 1), (int(np.sum(a >= 0)) + 1) / (a.size + 1)
    return float(min(1.0, 2 * min(below, above)))


class EncodedResults:
    """One approach's test results as integer codes, for the many replicates of a bootstrap.

    ``open_set_metrics`` (scikit-learn underneath) takes about 8 ms for 360 images; a bootstrap
    needs thousands of calls per split (intervals for every approach, plus the paired verdict),
    so the same metrics are computed here from sorted arrays and bincounts, about 0.3 ms a call.
    ``tests/test_metrics.py`` checks that both give the same values.
    """

    def __init__(self, true: Sequence[str], pred: Sequence[str], closed_pred: Sequence[str], score: np.ndarray | None,
                 is_unknown: np.ndarray, classes: Sequence[str]):
        self.unk = np.asarray(is_unknown, dtype=bool)
        k = len(classes)
        code = {c: i for i, c in enumerate(classes)}
        code[UNKNOWN] = k
        self.k = k
        true = np.asarray(true, dtype=object)
        self.t = np.array([k if u else code.get(x, k + 1) for x, u in zip(true, self.unk)], dtype=np.int64)
        self.p = np.array([code.get(x, k + 1) for x in np.asarray(pred, dtype=object)], dtype=np.int64)
        self.c = np.array([code.get(x, k + 1) for x in np.asarray(closed_pred, dtype=object)], dtype=np.int64)
        self.s = None if score is None else np.asarray(score, dtype=np.float64)

    @staticmethod
    def _auroc(y: np.ndarray, s: np.ndarray) -> float:
        from osd.ranking_intervals import mann_whitney_auc  # the one rank-sum AUROC

        return mann_whitney_auc(s[y], s[~y])

    @staticmethod
    def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
        order = np.argsort(-s, kind="mergesort")
        s, y = s[order], y[order]
        last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
        tps = np.cumsum(y)[last]
        precision = tps / (last + 1)
        recall = tps / tps[-1]
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    @staticmethod
    def _fpr_at(s_known: np.ndarray, s_unknown: np.ndarray, level: float = 0.95) -> float:
        nk = len(s_known)
        k = int(np.searchsorted(np.arange(1, nk + 1) / nk, level, side="left")) + 1
        t = np.sort(s_known)[k - 1]
        return float(np.mean(s_unknown <= t))

    def rate_counts(self) -> dict[str, tuple[int, int]]:
        """(k, n) of every single proportion over all the test images, for its exact interval (FPR@95 is
        not one: its threshold is a test statistic too; see :meth:`edge_intervals`)."""
        known = ~self.unk
        return {"closed_set_accuracy": (int(np.sum(self.c[known] == self.t[known])), int(known.sum())),
                "known_acceptance": (int(np.sum(self.p[known] < self.k)), int(known.sum())),
                "unknown_rejection": (int(np.sum(self.p[self.unk] == self.k)), int(self.unk.sum())),
                "open_set_accuracy": (int(np.sum(self.p == self.t)), int(self.t.size))}

    def edge_intervals(self, n_boot: int, seed: int) -> dict[str, list[float]]:
        """AUROC's and FPR@95's 95% intervals (:mod:`osd.ranking_intervals`), with a score and both kinds
        of images; FPR@95's only with bootstrap replicates (its threshold's noise needs them)."""
        from osd.ranking_intervals import auroc_interval, fpr_at_tpr_interval

        known = ~self.unk
        if self.s is None or not (known.any() and self.unk.any()):
            return {}
        auc = self._auroc(self.unk, self.s)
        out = {"auroc": auroc_interval(auc, int(self.unk.sum()), int(known.sum())),
               "fpr_at_95_tpr": fpr_at_tpr_interval(self.s[known], self.s[self.unk], n_boot, seed)}
        return {k: v for k, v in out.items() if v is not None}

    def metrics(self, idx: np.ndarray, keys: Sequence[str]) -> dict[str, float]:
        t, p, c, unk = self.t[idx], self.p[idx], self.c[idx], self.unk[idx]
        known = ~unk
        out: dict[str, float] = {}
        if "closed_set_accuracy" in keys:
            out["closed_set_accuracy"] = float(np.mean(c[known] == t[known]))
        if "known_acceptance" in keys:
            out["known_acceptance"] = float(np.mean(p[known] < self.k))
        if "unknown_rejection" in keys:
            out["unknown_rejection"] = float(np.mean(p[unk] == self.k))
        if "open_set_accuracy" in keys:
            out["open_set_accuracy"] = float(np.mean(p == t))
        if "open_set_macro_f1" in keys:
            n = self.k + 2
            cm = np.bincount(t * n + p, minlength=n * n).reshape(n, n)[: self.k + 1, : self.k + 1]
            tp = np.diag(cm).astype(float)
            fp = np.bincount(p, minlength=n)[: self.k + 1] - tp
            fn = np.bincount(t, minlength=n)[: self.k + 1] - tp
            den = 2 * tp + fp + fn
            out["open_set_macro_f1"] = float(np.mean(np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)))
        if self.s is not None and known.any() and unk.any():
            s = self.s[idx]
            if "auroc" in keys:
                out["auroc"] = self._auroc(unk, s)
            if "aupr_out" in keys:
                out["aupr_out"] = self._average_precision(unk, s)
            if "aupr_in" in keys:
                out["aupr_in"] = self._average_precision(known, -s)
            if "fpr_at_95_tpr" in keys:
                out["fpr_at_95_tpr"] = self._fpr_at(s[known], s[unk])
            if "oscr" in keys:
                out["oscr"] = oscr(c[known] == t[known], s[known], s[unk])
        return out


def metric_intervals(true: Sequence[str], pred: Sequence[str], closed_pred: Sequence[str], score: np.ndarray | None,
                     is_unknown: np.ndarray, classes: Sequence[str], n_boot: int = 1000, seed: int = 0
                     ) -> dict[str, list[float]]:
    """95% intervals of :func:`open_set_metrics`: exact Clopper-Pearson for the single rates (:data:`RATES`,
    with or without bootstrap replicates); AUROC's and FPR@95's intervals at their edges
    (:meth:`EncodedResults.edge_intervals`); stratified bootstrap for macro-F1, AUPR and OSCR (only with a
    score, and only with ``n_boot`` > 0)."""
    enc = EncodedResults(true, pred, closed_pred, score, is_unknown, classes)
    keys = tuple(k for k in DECISION + (RANKING if score is not None else ()) if k not in RATES + EDGE_SAFE)
    out = bootstrap(lambda idx: enc.metrics(idx, keys), enc.unk, n_boot, seed) if n_boot else {}
    return {**without_degenerate(out), **enc.edge_intervals(n_boot, seed), **rate_intervals(enc.rate_counts())}


def without_degenerate(intervals: dict[str, list[float]]) -> dict[str, list[float]]:
    """The bootstrap intervals less those of zero width: when every replicate gives the same value (a
    perfectly separated AUROC of 1), resampling cannot bound it, and no interval is better than
    ``[1.000, 1.000]``; the report says so."""
    # a tolerance: replicates that differ only in the last bits (an AUPR of 1 summed in another order) are equal
    return {k: v for k, v in intervals.items() if not (len(v) == 2 and np.isfinite(v).all() and v[1] - v[0] <= 1e-9)}


def paired_difference(a: Any, b: Any, keys: Sequence[str], strata: np.ndarray,
                      n_boot: int, seed: int) -> dict[str, dict[str, object]]:
    """``a`` minus ``b`` on the same test images, per metric: the difference, its paired stratified
    bootstrap 95% interval (both resampled with the same indices), whether that excludes zero, the
    two-sided p-value from the same replicates (:func:`bootstrap_p_value`) and how many replicates
    were NaN (left out of both, and reported). With ``n_boot = 0`` nothing is tested: ``ci95``,
    ``excludes_zero`` and ``p_value`` are ``None``.
    ``a`` and ``b``: anything with ``metrics(indices, keys)`` (:class:`EncodedResults`, or
    :class:`osd.three_outcome.ThreeOutcome`); ``strata``: see :func:`bootstrap`."""
    def diff(idx: np.ndarray) -> dict[str, float]:
        ma, mb = a.metrics(idx, keys), b.metrics(idx, keys)
        return {k: ma[k] - mb[k] for k in keys}

    unk = np.asarray(strata)
    point = diff(np.arange(len(unk)))
    reps = bootstrap_replicates(diff, unk, n_boot, seed) if n_boot else {}
    out: dict[str, dict[str, object]] = {}
    for k in keys:
        r = reps.get(k)
        ci = percentile_interval(r) if r is not None else None
        tested = ci is not None and all(np.isfinite(ci))
        out[k] = {"difference": point[k], "ci95": ci,
                  "excludes_zero": bool(ci[0] > 0 or ci[1] < 0) if tested else None,
                  "p_value": bootstrap_p_value(r) if r is not None else None,
                  "replicates": int(n_boot), "nan_replicates": int(np.sum(~np.isfinite(r))) if r is not None else 0}
    return out

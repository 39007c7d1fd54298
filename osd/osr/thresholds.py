"""Acceptance thresholds set on data that is never test data (validation or calibration images).

Scores follow one sign: higher = more unknown / more anomalous. A sample is accepted
(known, or normal) when its score <= ``threshold_``.

The threshold is a conservative order statistic: the k-th smallest of the n fitting scores with
k = ceil((n + 1) * acceptance), the split-conformal rule, so that a new exchangeable sample is
accepted with probability at least ``acceptance``. A linear quantile would accept only 0.90 of
the fitting scores at n = 10 and less than the target on new data.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from osd.errors import OsdWarning, SmallSampleWarning
from osd.proportion import clopper_pearson

# The 95% interval of the acceptance may reach this far below the target before a warning.
SLACK = 0.05


def order_statistic_rank(n: int, acceptance: float) -> int:
    """k = ceil((n + 1) * acceptance), capped at n (then every fitting score is accepted)."""
    return min(n, max(1, math.ceil((n + 1) * acceptance - 1e-12)))


class AcceptanceThreshold(BaseEstimator):
    """``threshold_`` is the k-th smallest fitting score, k = ceil((n + 1) * acceptance).

    Fitted attributes: ``threshold_``, ``n_samples_``, ``rank_`` (k), ``accepted_fraction_``
    (k / n on the fitting scores, ties included), ``acceptance_ci_`` (Clopper-Pearson 95% interval
    of the acceptance of new samples) and ``small_sample_`` (True when that interval reaches more
    than 0.05 below the target, or n is too small for the rank to exist).
    """

    quiet = False  # a threshold pickled before the parameter existed warns, as it did

    def __init__(self, acceptance: float = 0.95, name: str = "threshold", quiet: bool = False):
        self.acceptance = acceptance
        self.name = name
        self.quiet = quiet  # the caller says it once for several thresholds (warn_small_samples)

    def fit(self, scores: np.ndarray, y: None = None) -> AcceptanceThreshold:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise ValueError(f"{self.name}: cannot set a threshold on zero scores")
        n = int(scores.size)
        k = order_statistic_rank(n, self.acceptance)
        self.threshold_ = float(np.sort(scores)[k - 1])
        self.n_samples_ = n
        self.rank_ = k
        accepted = int(np.sum(scores <= self.threshold_))
        self.accepted_fraction_ = accepted / n
        self.acceptance_ci_ = list(clopper_pearson(accepted, n))
        exists = math.ceil((n + 1) * self.acceptance - 1e-12) <= n
        self.small_sample_ = bool(not exists or self.acceptance_ci_[0] < self.acceptance - SLACK)
        if self.small_sample_ and not self.quiet:
            warnings.warn(SmallSampleWarning(
                f"{self.name}: set on only {n} scores; the 95% interval of its acceptance is "
                f"{self.acceptance_ci_[0]:.2f}-{self.acceptance_ci_[1]:.2f} for a target of {self.acceptance:.2f}"
                + ("" if exists else f" (n >= {math.ceil(self.acceptance / (1 - self.acceptance))} needed for the "
                   "order statistic; every fitting score is accepted)"), "",
                f"{self.name} ({n} scores: {self.acceptance_ci_[0]:.2f}-{self.acceptance_ci_[1]:.2f})"),
                stacklevel=2,
            )
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """True where the score is rejected (unknown / anomalous)."""
        check_is_fitted(self, "threshold_")
        return np.asarray(scores) > self.threshold_

    def summary(self) -> dict[str, object]:
        """The threshold and its uncertainty, for metrics.json."""
        check_is_fitted(self, "threshold_")
        return {"threshold": self.threshold_, "target_acceptance": self.acceptance, "n": self.n_samples_,
                "rank": self.rank_, "rule": "k-th smallest fitting score, k = ceil((n + 1) * target)",
                "fitted_acceptance": self.accepted_fraction_, "acceptance_ci95": self.acceptance_ci_,
                "small_sample": self.small_sample_}


def warn_small_samples(thresholds: dict[str, AcceptanceThreshold], where: str) -> None:
    """One warning for every threshold of ``thresholds`` (name -> fitted) set on too few scores: a split
    whose six thresholds share 24 validation images says so once, naming them."""
    small = {name: t for name, t in thresholds.items() if t.small_sample_}
    if not small:
        return
    first = next(iter(small.values()))
    lo, hi = first.acceptance_ci_
    scope = m.group(0) if (m := re.match(r"split [^\s:,]+", where)) else ""
    warnings.warn(SmallSampleWarning(
        f"{where}: {', '.join(small)} set on only {first.n_samples_} scores; the 95% interval of the acceptance is "
        f"{lo:.2f}-{hi:.2f} for a target of {first.acceptance:.2f} (more validation images narrow it)", scope,
        f"{where.removeprefix(scope).lstrip(': ') or 'the one-stage method'}: {', '.join(small)} "
        f"({first.n_samples_} scores: {lo:.2f}-{hi:.2f})"), stacklevel=3)


def acceptance_words(summary: dict[str, object], unit: str = "image") -> str:
    """What a fitted threshold accepts, in words, from :meth:`AcceptanceThreshold.summary`: its target
    where the order statistic reaches it, else what it does accept (never "set to accept 95%" on 10 scores)."""
    target, n = float(summary["target_acceptance"]), int(summary["n"])
    ci = summary.get("acceptance_ci95") or [float("nan")] * 2
    if math.ceil((n + 1) * target - 1e-12) <= n:
        return (f"set to accept {target:.0%} of calibration {unit}s (on {n}; a new one's acceptance: 95% interval "
                f"{ci[0]:.3f} to {ci[1]:.3f})")
    return (f"the largest of {n} calibration {unit} scores: too few for a {target:.0%} target (at least "
            f"{scores_needed(target)} are needed), so it accepts a new good {unit} with probability about "
            f"{n / (n + 1):.0%}")


# Operating points a line can choose from: the same order-statistic rule at other acceptance targets.
TARGETS = (0.90, 0.95, 0.99, 0.999)


def scores_needed(acceptance: float) -> int:
    """The fewest fitting scores for which the k-th order statistic exists (k = ceil((n + 1) a) <= n)."""
    n = max(1, int(acceptance / (1 - acceptance)) - 1)
    while math.ceil((n + 1) * acceptance - 1e-12) > n:
        n += 1
    return n


def operating_points(fit_scores: np.ndarray, accept: np.ndarray, reject: np.ndarray | None,
                     targets: tuple[float, ...] = TARGETS) -> list[dict[str, object]]:
    """The threshold at each acceptance target, set on ``fit_scores`` (never test data), with its
    Clopper-Pearson interval; and what it does on test data: the share of ``accept`` (images that
    should pass: test knowns, test normals) at or below it, and of ``reject`` (unknowns, defects)
    above it. A target the fitting set is too small for says how many scores it needs."""
    s = np.asarray(fit_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    acc = np.asarray(accept, dtype=np.float64)
    rej = None if reject is None else np.asarray(reject, dtype=np.float64)
    out: list[dict[str, object]] = []
    for a in targets:
        need = scores_needed(a)
        if s.size < need:
            out.append({"target": a, "threshold": None, "n": int(s.size), "needed": need,
                        "note": f"too few images for this target: {need} needed, {s.size} here"})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OsdWarning)  # the interval says how wide it is
            thr = AcceptanceThreshold(a, f"operating point {a}").fit(s)
        n_acc, n_rej = int(np.sum(acc <= thr.threshold_)), int(np.sum(rej > thr.threshold_)) if rej is not None else 0
        out.append({"target": a, "threshold": thr.threshold_, "n": int(s.size), "needed": need,
                    "acceptance_ci95": thr.acceptance_ci_,
                    "test_accepted": n_acc / acc.size if acc.size else None,
                    "test_accepted_ci95": list(clopper_pearson(n_acc, acc.size)) if acc.size else None,
                    "test_rejected": n_rej / rej.size if rej is not None and rej.size else None,
                    "test_rejected_ci95": list(clopper_pearson(n_rej, rej.size)) if rej is not None and rej.size
                    else None})
    return out

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
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from osd.errors import OsdWarning

# The 95% interval of the acceptance may reach this far below the target before a warning.
SLACK = 0.05


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


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

    def __init__(self, acceptance: float = 0.95, name: str = "threshold"):
        self.acceptance = acceptance
        self.name = name

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
        if self.small_sample_:
            warnings.warn(
                f"{self.name}: set on only {n} scores; the 95% interval of its acceptance is "
                f"{self.acceptance_ci_[0]:.2f}-{self.acceptance_ci_[1]:.2f} for a target of {self.acceptance:.2f}"
                + ("" if exists else f" (n >= {math.ceil(self.acceptance / (1 - self.acceptance))} needed for the "
                   "order statistic; every fitting score is accepted)"),
                OsdWarning, stacklevel=2,
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

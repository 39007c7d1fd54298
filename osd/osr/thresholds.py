"""Acceptance thresholds set on data that is never test data (validation or calibration images).

Scores follow one sign: higher = more unknown / more anomalous. A sample is accepted
(known, or normal) when its score <= ``threshold_``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted


class AcceptanceThreshold(BaseEstimator):
    """``threshold_`` is the ``acceptance`` quantile of the fitting scores (numpy's linear quantile)."""

    def __init__(self, acceptance: float = 0.95):
        self.acceptance = acceptance

    def fit(self, scores: np.ndarray, y: None = None) -> AcceptanceThreshold:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.size == 0:
            raise ValueError("cannot set a threshold on zero scores")
        self.threshold_ = float(np.quantile(scores, self.acceptance))
        self.n_samples_ = int(scores.size)
        self.accepted_fraction_ = float(np.mean(scores <= self.threshold_))
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """True where the score is rejected (unknown / anomalous)."""
        check_is_fitted(self, "threshold_")
        return np.asarray(scores) > self.threshold_

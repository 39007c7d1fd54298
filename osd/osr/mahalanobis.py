"""Mahalanobis open-set scorer with scikit-learn's estimator contract.

Class means from training embeddings, one shared covariance (shrinkage estimators from
``sklearn.covariance`` stay well conditioned with fewer images than dimensions).
Score sign: higher = farther from every known class = more likely unknown.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.utils.validation import check_is_fitted

ESTIMATORS = {"ledoitwolf": LedoitWolf, "oas": OAS, "empirical": EmpiricalCovariance}


class MahalanobisScorer(BaseEstimator):
    """``score_samples(X)`` = smallest squared Mahalanobis distance to a class mean (higher = more unknown)."""

    def __init__(self, covariance: str = "ledoitwolf", normalize: str = "l2"):
        self.covariance = covariance
        self.normalize = normalize

    def _prep(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return l2_normalize(X) if self.normalize == "l2" else X

    def fit(self, X: np.ndarray, y: np.ndarray) -> MahalanobisScorer:
        X = self._prep(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        centered = X - self.means_[np.searchsorted(self.classes_, y)]
        est = ESTIMATORS[self.covariance](assume_centered=True, store_precision=True).fit(centered)
        self.covariance_ = est.covariance_
        self.precision_ = est.get_precision()
        self.n_features_in_ = X.shape[1]
        return self

    def distances(self, X: np.ndarray) -> np.ndarray:
        """(n_samples, n_classes) squared Mahalanobis distances."""
        check_is_fitted(self, "precision_")
        X = self._prep(X)
        out = np.empty((len(X), len(self.classes_)))
        for k, mu in enumerate(self.means_):
            d = X - mu
            out[:, k] = np.einsum("ij,ij->i", d @ self.precision_, d)
        return out

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return self.distances(X).min(axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.distances(X).argmin(axis=1)]


class MultiBlockMahalanobis(BaseEstimator):
    """One :class:`MahalanobisScorer` per feature block (``widths`` splits the columns of ``X``).

    With several blocks, each block's distance is standardised by its mean and standard
    deviation on reference images of the known classes (``X_ref`` in ``fit``, the validation
    images; the training images when absent), so blocks of different size count equally, and the
    score is the mean of the standardised distances. With one block the score is the plain
    distance. Score sign: higher = more unknown.
    """

    def __init__(self, widths: tuple[int, ...] = (), covariance: str = "ledoitwolf", normalize: str = "l2"):
        self.widths = widths
        self.covariance = covariance
        self.normalize = normalize

    def _blocks(self, X: np.ndarray) -> list[np.ndarray]:
        X = np.asarray(X)
        widths = tuple(self.widths) or (X.shape[1],)
        if sum(widths) != X.shape[1]:
            raise ValueError(f"block widths sum to {sum(widths)}, X has {X.shape[1]} columns")
        return np.split(X, np.cumsum(widths)[:-1], axis=1)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.stack([s.score_samples(b) for s, b in zip(self.scorers_, self._blocks(X))], axis=1)

    def fit(self, X: np.ndarray, y: np.ndarray, X_ref: np.ndarray | None = None) -> MultiBlockMahalanobis:
        blocks = self._blocks(X)
        self.scorers_ = [MahalanobisScorer(self.covariance, self.normalize).fit(b, y) for b in blocks]
        self.classes_ = self.scorers_[0].classes_
        if len(blocks) == 1:
            self.loc_, self.scale_ = np.zeros(1), np.ones(1)
        else:
            ref = self._raw(X if X_ref is None else X_ref)
            self.loc_ = ref.mean(axis=0)
            std = ref.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0)
        self.n_features_in_ = int(np.asarray(X).shape[1])
        return self

    def block_scores(self, X: np.ndarray) -> np.ndarray:
        """(n_samples, n_blocks) standardised smallest squared distances."""
        check_is_fitted(self, "scorers_")
        return (self._raw(X) - self.loc_) / self.scale_

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return self.block_scores(X).mean(axis=1)

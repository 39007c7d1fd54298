"""Modern out-of-distribution baselines beside the locked method, from the cached classifier's
embeddings and logits: no retraining, no second pass over the images.

Every scorer follows scikit-learn's contract: ``fit(X, y)`` on training data sets ``attr_`` and
returns ``self``; ``score_samples`` is **higher = more unknown**, the convention of the rest of osd.

- ``energy`` (Liu et al. 2020): minus the log-sum-exp of the logits (temperature 1).
- ``maxlogit`` (Hendrycks et al. 2022): minus the largest logit.
- ``vim`` (Wang et al. 2022, Virtual-logit Matching): the norm of the embedding's residual outside
  the principal subspace of the training embeddings (origin ``-pinv(W) b``), scaled by alpha so it
  matches the logits on training data, minus the energy term: ``alpha * ||x_res|| - logsumexp``.
- ``knn`` (Sun et al. 2022): the distance from the l2-normalised embedding to its k-th nearest
  l2-normalised training embedding (k: :func:`knn_k`).

Hand-written, a few lines each: they score cached float64 arrays under scikit-learn's contract,
where ``pytorch-ood`` (0.4.0) scores torch tensors in float32 through its own detector API. Each is
tested against pytorch-ood's implementation on the same features (``tests/test_baselines_library.py``:
energy and MaxLogit to 1e-6, kNN to 1e-6, ViM to 1e-3, the float32 of theirs).

- ``odin`` (Liang et al. 2018), opt-in: it needs the gradient with respect to every image, which the
  cached arrays cannot give, so :mod:`osd.pipeline.odin` runs the classifier again
  (:func:`osd.models.odin.odin_scores`) and :class:`ODINScore` reads those scores as they are.
- ``gen`` (Liu et al. 2023), ``react`` (Sun et al. 2021), ``ash`` (Djurisic et al. 2023) and
  ``mahalanobis_norm`` (Mueller and Hein 2025, "Mahalanobis++"), opt-in: scored by pytorch-ood itself
  (``pip install "osd[ood]"``), so there is no hand-written copy of them to keep.

The locked method (:class:`osd.osr.mahalanobis.MahalanobisScorer`) stays hand-written: it uses a
shrinkage covariance (``sklearn.covariance.LedoitWolf``), which pytorch-ood's Mahalanobis (the summed
scatter plus a 1e-6 ridge, inverted) does not offer; with fewer training images than embedding
dimensions (EfficientNet-Lite0: 1280) the unshrunk scatter is singular. ``mahalanobis_norm`` is the
library's Mahalanobis on the same l2-normalised embeddings, reported beside it, and the tests hold
osd's scorer with an empirical covariance to the library's numbers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted

from osd.osr.embeddings import EmbeddedPart

BASELINES = ("energy", "maxlogit", "vim", "knn", "odin", "gen", "react", "ash", "mahalanobis_norm", "rmds", "scale",
             "fdbd", "nnguide", "nci")
# Each baseline's score in words (the report and metrics.json show it) and its name in a table: the one
# place they are written (the config's choices at osd.config are tested to agree with BASELINES).
SCORES = {
    "energy": "negative energy: -logsumexp(logits) (higher = more unknown)",
    "maxlogit": "negative largest logit (higher = more unknown)",
    "vim": "ViM: alpha x residual norm outside the training embeddings' principal subspace - logsumexp(logits)",
    "knn": "distance to the k-th nearest training embedding, both l2-normalised (k = training images / 100, 1-50)",
    "odin": "ODIN: -max softmax(logits / T) of the image perturbed by eps against the predicted class's gradient "
            "(T = 1000, eps = 0.0014 in pixel units, the paper's defaults; a second pass over the images)",
    "gen": "GEN: generalized entropy of the softmax, gamma = 0.1 over every class (pytorch-ood's implementation)",
    "react": "ReAct: energy of the head on the penultimate embedding clipped at the 90th percentile of the training "
             "activations (pytorch-ood's implementation)",
    "ash": "ASH-S: energy of the head on the penultimate embedding with its smallest 65% of activations per image set "
           "to zero and the rest sharpened (pytorch-ood's implementation and default percentile)",
    "mahalanobis_norm": "Mahalanobis++: half the squared Mahalanobis distance to the nearest class mean of the "
                        "l2-normalised embedding, one shared covariance (summed scatter, pytorch-ood's implementation)",
    "rmds": "RMDS: the smallest class Mahalanobis distance minus the distance under one Gaussian fitted to every "
            "training embedding (relative Mahalanobis, Ren et al. 2021), the locked method's shrinkage covariance "
            "and l2 normalisation",
    "scale": "SCALE: energy of the head on the penultimate embedding scaled by exp(sum / sum of its top 35%), nothing "
             "pruned (Xu et al. 2024; pytorch-ood's implementation and default percentile 0.65)",
    "fdbd": "fDBD: minus the mean distance to the head's decision boundaries over the other classes, divided by the "
            "distance to the training embeddings' mean (Liu and Qin 2024; pytorch-ood's implementation)",
    "nnguide": "NNGuide: energy scaled by the mean similarity to the k = 10 nearest training embeddings, "
               "l2-normalised (Park et al. 2023; pytorch-ood's implementation)",
    "nci": "NCI: the embedding's alignment with its predicted class's weight, centred on the training mean (Liu et "
           "al. 2025, neural-collapse inspired; alpha = 0; pytorch-ood's implementation)",
}
HUMAN = {"energy": "energy", "maxlogit": "MaxLogit", "vim": "ViM", "knn": "kNN (osd's k rule)",
         "odin": "ODIN (paper's T and eps)", "gen": "GEN (pytorch-ood)", "react": "ReAct (pytorch-ood)",
         "ash": "ASH-S (pytorch-ood)", "mahalanobis_norm": "Mahalanobis++, l2-normalised (pytorch-ood)",
         "rmds": "RMDS (relative Mahalanobis)", "scale": "SCALE (pytorch-ood)", "fdbd": "fDBD (pytorch-ood)",
         "nnguide": "NNGuide (pytorch-ood)", "nci": "NCI (pytorch-ood)"}
NEEDS_IMAGES = ("odin",)  # baselines that run the classifier over the images again


class EnergyScore(BaseEstimator):
    """``score_samples(logits)`` = -logsumexp(logits); nothing to fit."""

    def fit(self, logits: np.ndarray, y: None = None) -> EnergyScore:
        self.n_classes_ = int(np.asarray(logits).shape[1])
        return self

    def score_samples(self, logits: np.ndarray) -> np.ndarray:
        return -logsumexp(np.asarray(logits, dtype=np.float64), axis=1)


class MaxLogit(BaseEstimator):
    """``score_samples(logits)`` = -max logit; nothing to fit."""

    def fit(self, logits: np.ndarray, y: None = None) -> MaxLogit:
        self.n_classes_ = int(np.asarray(logits).shape[1])
        return self

    def score_samples(self, logits: np.ndarray) -> np.ndarray:
        return -np.asarray(logits, dtype=np.float64).max(axis=1)


def vim_dimension(d: int, n: int) -> int:
    """The principal subspace's size: the ViM paper's rule by feature width (1000 / 512 / half), and at
    most half the training images (with fewer images than dimensions the subspace would hold every
    training embedding, leaving no residual to match: fixed here, never chosen on test data)."""
    return max(1, min(1000 if d >= 2048 else 512 if d >= 768 else d // 2, n // 2))


def knn_k(n: int) -> int:
    """k of the kNN baseline, osd's own rule: one neighbour per 100 training images (at least 1, at most
    50). That is ten times the density of Sun et al.'s k = 50 at 50,000 training images (CIFAR-10,
    one per 1,000); chosen so that on small data sets the k-th neighbour is not a single image, fixed
    and never tuned on test data, and described as osd's rule wherever it is reported."""
    return max(1, min(50, n // 100))


class ViM(BaseEstimator):
    """Virtual-logit matching on (embedding, logits) of the classifier whose head is ``W x + b``."""

    def __init__(self, weight: np.ndarray | None = None, bias: np.ndarray | None = None, dim: int = 0):
        self.weight = weight
        self.bias = bias
        self.dim = dim

    def fit(self, X: np.ndarray, y: None = None) -> ViM:
        X = np.asarray(X, dtype=np.float64)
        W, b = np.asarray(self.weight, dtype=np.float64), np.asarray(self.bias, dtype=np.float64)
        self.origin_ = -np.linalg.pinv(W) @ b
        centred = X - self.origin_
        d = self.dim or vim_dimension(X.shape[1], len(X))
        d = max(1, min(d, X.shape[1] - 1, len(X) - 1))
        # eigenvectors of the (uncentred about the mean, centred at the origin) covariance, largest first
        _, vecs = np.linalg.eigh(centred.T @ centred / len(X))
        self.residual_basis_ = np.ascontiguousarray(vecs[:, : X.shape[1] - d])  # the smallest eigenvalues
        logits = X @ W.T + b
        self.alpha_ = float(logits.max(axis=1).mean() / max(self._residual(X).mean(), 1e-12))
        self.dim_ = d
        return self

    def _residual(self, X: np.ndarray) -> np.ndarray:
        return np.linalg.norm((np.asarray(X, dtype=np.float64) - self.origin_) @ self.residual_basis_, axis=1)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "residual_basis_")
        X = np.asarray(X, dtype=np.float64)
        logits = X @ np.asarray(self.weight, dtype=np.float64).T + np.asarray(self.bias, dtype=np.float64)
        return self.alpha_ * self._residual(X) - logsumexp(logits, axis=1)


class KNNScore(BaseEstimator):
    """Distance to the k-th nearest training embedding, both l2-normalised."""

    def __init__(self, k: int = 50):
        self.k = k

    @staticmethod
    def _unit(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

    def fit(self, X: np.ndarray, y: None = None) -> KNNScore:
        X = self._unit(X)
        self.k_ = int(max(1, min(self.k, len(X))))
        self.index_ = NearestNeighbors(n_neighbors=self.k_).fit(X)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "index_")
        dist, _ = self.index_.kneighbors(self._unit(X))
        return dist[:, -1]


class ODINScore(BaseEstimator):
    """ODIN's scores, computed by the classifier's second pass over the images
    (:mod:`osd.pipeline.odin`), read as they are: ``score_samples(scores) = scores``; nothing to fit."""

    def fit(self, X: np.ndarray | None = None, y: None = None) -> ODINScore:
        self.fitted_ = True
        return self

    def score_samples(self, scores: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "fitted_")
        return np.asarray(scores, dtype=np.float64)


class GENScore(BaseEstimator):
    """GEN (Liu et al. 2023, generalized entropy of the softmax, gamma = 0.1 over every class), scored
    by pytorch-ood's own implementation (opt-in: ``pip install "osd[ood]"``); higher = more unknown."""

    def __init__(self, gamma: float = 0.1):
        self.gamma = gamma

    def fit(self, logits: np.ndarray, y: None = None) -> GENScore:
        _pytorch_ood()
        self.n_classes_ = int(np.asarray(logits).shape[1])
        return self

    def score_samples(self, logits: np.ndarray) -> np.ndarray:
        import torch

        check_is_fitted(self, "n_classes_")
        t = torch.as_tensor(np.asarray(logits, dtype=np.float64))
        return _pytorch_ood().GEN.score(t, gamma=self.gamma).numpy().astype(np.float64)


class ReActScore(BaseEstimator):
    """ReAct (Sun et al. 2021): the penultimate embedding clipped at the ``percentile`` of the training
    activations, then the energy of the classifier's head on it; scored by pytorch-ood's own ReAct
    (opt-in: ``pip install "osd[ood]"``) with the stored embedding as its feature map and the head's
    weights as its head, in float64. Higher = more unknown."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, percentile: float = 0.9):
        self.weight, self.bias, self.percentile = weight, bias, percentile

    def _detector(self, threshold: float | None = None):
        import torch

        w = torch.as_tensor(np.asarray(self.weight, dtype=np.float64))
        b = torch.as_tensor(np.asarray(self.bias, dtype=np.float64))
        return _pytorch_ood().ReAct(torch.nn.Identity(), lambda f: f @ w.T + b, threshold=threshold,
                                    percentile=self.percentile)

    def fit(self, x: np.ndarray, y: None = None) -> ReActScore:
        import torch

        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        self.threshold_ = float(self._detector().fit_feature_maps(t, torch.zeros(len(t), dtype=torch.long)).threshold)
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        import torch

        check_is_fitted(self, "threshold_")
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        return self._detector(self.threshold_).predict_feature_maps(t).numpy().astype(np.float64)


class ASHScore(BaseEstimator):
    """ASH-S (Djurisic et al. 2023): the penultimate embedding with its smallest ``percentile`` of
    activations per image set to zero and the rest scaled by exp(sum before / sum after), then the
    energy of the head; scored by pytorch-ood's own ASH with the stored embedding as a 1x1 feature map
    (as its documentation says pooled features are passed). Higher = more unknown; nothing to fit."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, variant: str = "ash-s", percentile: float = 0.65):
        self.weight, self.bias, self.variant, self.percentile = weight, bias, variant, percentile

    def fit(self, x: np.ndarray, y: None = None) -> ASHScore:
        _pytorch_ood()
        self.n_features_in_ = int(np.asarray(x).shape[1])
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        import torch

        check_is_fitted(self, "n_features_in_")
        w = torch.as_tensor(np.asarray(self.weight, dtype=np.float64))
        b = torch.as_tensor(np.asarray(self.bias, dtype=np.float64))
        ash = _pytorch_ood().ASH(torch.nn.Identity(), lambda f: f.flatten(1) @ w.T + b, variant=self.variant,
                                 percentile=self.percentile)
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        return ash.predict_feature_maps(t[:, :, None, None]).numpy().astype(np.float64)


class NormalizedMahalanobis(BaseEstimator):
    """Mahalanobis++ (Mueller and Hein 2025): pytorch-ood's Mahalanobis (class means, one shared summed
    scatter) fitted and scored on l2-normalised embeddings. ``score_samples`` = half the squared
    distance to the nearest class mean under that scatter (higher = more unknown). In float32: the
    library keeps its means and scatter in torch's default dtype."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> NormalizedMahalanobis:
        import torch

        labels = np.asarray(y)
        self.classes_, codes = np.unique(labels, return_inverse=True)
        self.detector_ = _pytorch_ood().Mahalanobis(None).fit_features(self._unit(x), torch.as_tensor(codes))
        return self

    @staticmethod
    def _unit(x: np.ndarray):
        import torch

        x = np.asarray(x, dtype=np.float64)
        return torch.as_tensor(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=torch.float32)

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "detector_")
        return self.detector_.predict_features(self._unit(x)).numpy().astype(np.float64)


class RelativeMahalanobis(BaseEstimator):
    """RMDS (Ren et al. 2021), relative Mahalanobis: the smallest class distance minus the distance under
    one Gaussian fitted to every training embedding, both with the locked method's estimator (shrinkage
    covariance, l2-normalised embeddings) so the two differ by the background term alone. Higher = more
    unknown.

    Hand-written on :class:`osd.osr.mahalanobis.MahalanobisScorer`: pytorch-ood's RMD inverts the summed
    scatter plus a 1e-6 ridge in float32, singular with fewer training images than dimensions (720 and
    1280 for EfficientNet-Lite0 on NEU: AUROC 0.467 over the 15 splits of the complete design, worse than
    chance); with an empirical covariance on well-conditioned features it equals the library's times the
    training count (``tests/test_baselines_library.py``)."""

    def __init__(self, covariance: str = "ledoitwolf", normalize: str = "l2"):
        self.covariance, self.normalize = covariance, normalize

    def fit(self, x: np.ndarray, y: np.ndarray) -> RelativeMahalanobis:
        from osd.osr.mahalanobis import MahalanobisScorer

        self.classes_ = MahalanobisScorer(self.covariance, self.normalize).fit(x, y)
        self.background_ = MahalanobisScorer(self.covariance, self.normalize).fit(x, np.zeros(len(x), dtype=int))
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "background_")
        return self.classes_.score_samples(x) - self.background_.score_samples(x)


class LibraryScore(BaseEstimator):
    """A post-hoc detector of pytorch-ood (0.4.0) scored on the cached penultimate embeddings, the classifier's
    head rebuilt from its stored weights, in float32 (the library's dtype). ``name``: ``scale`` (SCALE),
    ``fdbd`` (fDBD), ``nnguide`` (NNGuide, k = 10), ``nci`` (NCI, alpha = 0). Each library
    detector returns higher = more unknown, osd's convention. Opt-in: ``pip install "osd[ood]"``."""

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray):
        self.name, self.weight, self.bias = name, weight, bias

    def _head(self):
        import torch

        w = np.asarray(self.weight, dtype=np.float32)
        head = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(w))
            head.bias.copy_(torch.as_tensor(np.asarray(self.bias, dtype=np.float32)))
        return head

    def fit(self, x: np.ndarray, y: np.ndarray) -> LibraryScore:
        import torch

        lib = _pytorch_ood()
        z = torch.as_tensor(np.asarray(x, dtype=np.float32))
        codes = torch.as_tensor(np.unique(np.asarray(y), return_inverse=True)[1])
        head = self._head()
        if self.name == "scale":
            self.detector_ = lib.SCALE(torch.nn.Identity(), lambda f: head(f.flatten(1)))
        elif self.name == "fdbd":
            self.detector_ = lib.fDBD(None, head).fit_features(z)
        elif self.name == "nnguide":
            self.detector_ = lib.NNGuide(None, head).fit_features(z, codes)
        elif self.name == "nci":
            self.detector_ = lib.NCI(None, head).fit_features(z)
        else:
            raise ValueError(f"unknown library baseline {self.name!r}")
        return self

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        import torch

        check_is_fitted(self, "detector_")
        z = torch.as_tensor(np.asarray(x, dtype=np.float32))
        with torch.no_grad():
            out = (self.detector_.predict_feature_maps(z[:, :, None, None]) if self.name == "scale"
                   else self.detector_.predict_features(z))
        return out.numpy().astype(np.float64)


LIBRARY = ("scale", "fdbd", "nnguide", "nci")


def _pytorch_ood():
    try:
        import pytorch_ood.detector as detectors
    except ImportError:
        from osd.errors import ConfigError

        raise ConfigError('osr.baselines gen, react, ash, mahalanobis_norm, scale, fdbd, nnguide and nci are scored by '
                          'pytorch-ood, which is not installed: pip install "osd[ood]"') from None
    return detectors


def fit_baseline(name: str, train: EmbeddedPart, head: tuple[np.ndarray, np.ndarray]):
    """(fitted scorer, which input it reads: "logits", "embeddings" or "odin") of one baseline on the
    training partition."""
    if name == "energy":
        return EnergyScore().fit(train.logits), "logits"
    if name == "maxlogit":
        return MaxLogit().fit(train.logits), "logits"
    if name == "vim":
        return ViM(head[0], head[1]).fit(train.embeddings), "embeddings"
    if name == "knn":
        return KNNScore(knn_k(len(train.embeddings))).fit(train.embeddings), "embeddings"
    if name == "odin":
        return ODINScore().fit(), "odin"
    if name == "gen":
        return GENScore().fit(train.logits), "logits"
    if name == "react":
        return ReActScore(head[0], head[1]).fit(train.embeddings), "embeddings"
    if name == "ash":
        return ASHScore(head[0], head[1]).fit(train.embeddings), "embeddings"
    if name == "mahalanobis_norm":
        return NormalizedMahalanobis().fit(train.embeddings, train.labels), "embeddings"
    if name == "rmds":
        return RelativeMahalanobis().fit(train.embeddings, train.labels), "embeddings"
    if name in LIBRARY:
        return LibraryScore(name, head[0], head[1]).fit(train.embeddings, train.labels), "embeddings"
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")

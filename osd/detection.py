"""The detection study's statistics: good parts and bad parts, one threshold, ``no_defect`` / ``defect``.

Pure statistics over stage-1 scores (higher = more anomalous): the held-out normal images and
the defect images of a line, never the calibration images that set the threshold. Every value
has a 95% interval: the normal pass rate and the detection rate their exact Clopper-Pearson interval
over their own images (:mod:`osd.proportion`), AUROC its interval at the edges (exact at a perfect
separation, Newcombe's score interval otherwise: :mod:`osd.ranking_intervals`), AUPR and the detection
rates at fixed pass rates a stratified bootstrap (normals and defects resampled within themselves). Without
defect images only the normal pass rate can be measured; the rest is ``None`` and named in
:data:`NOT_MEASURED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from osd.metrics import EncodedResults, bootstrap, without_degenerate
from osd.proportion import rate_intervals
from osd.ranking_intervals import auroc_interval

# normal pass rates at which the detection rate is read off the test scores (a ranking metric, like
# TPR at a fixed FPR: it ranks the detector; an operating point set on calibration data is a decision)
PASS_RATES = (0.90, 0.95, 0.99)
DECISION = ("normal_pass_rate", "detection_rate")
RANKING = ("auroc", "aupr")
NOT_MEASURED = ("detection_rate", "auroc", "aupr", *(f"detection_at_pass_{p:g}" for p in PASS_RATES))
KEYS = ("normal_pass_rate", *NOT_MEASURED)


def normals_needed(pass_rate: float) -> int:
    """The fewest test normals at which a ``pass_rate`` point differs from passing them all: 1/(1-p)."""
    return int(round(1 / (1 - pass_rate)))


def detection_at_pass(normal: np.ndarray, defect: np.ndarray, pass_rate: float) -> float:
    """Share of defects above the smallest test-normal score that passes ``pass_rate`` of the normals."""
    s = np.sort(normal)
    k = min(len(s), max(1, int(np.ceil(pass_rate * len(s) - 1e-12))))
    return float(np.mean(defect > s[k - 1]))


def detection_metrics(normal: np.ndarray, defect: np.ndarray, threshold: float) -> dict[str, float]:
    """Point values on one set of test scores (defect = the positive class)."""
    out = {"normal_pass_rate": float(np.mean(normal <= threshold)) if normal.size else float("nan")}
    if not defect.size:
        return out
    out["detection_rate"] = float(np.mean(defect > threshold))
    if normal.size:
        y = np.r_[np.zeros(len(normal), bool), np.ones(len(defect), bool)]
        s = np.r_[normal, defect]
        out["auroc"] = EncodedResults._auroc(y, s)
        out["aupr"] = EncodedResults._average_precision(y, s)
        for p in PASS_RATES:
            # below 1/(1-p) test normals the p-quantile is their largest score: every such row would read
            # the same 100% point, so the row is left out (the report says how many good parts it needs)
            if len(normal) >= normals_needed(p):
                out[f"detection_at_pass_{p:g}"] = detection_at_pass(normal, defect, p)
    return out


@dataclass(frozen=True)
class DetectionMetrics:
    """The detection study's numbers on its test images, with 95% bootstrap intervals."""

    values: dict[str, float]
    intervals95: dict[str, list[float]]
    n_normal: int
    n_defect: int
    threshold: float

    @property
    def not_measured(self) -> list[str]:
        return [k for k in NOT_MEASURED if k not in self.values]

    def to_dict(self) -> dict[str, object]:
        return {**self.values, "intervals95": self.intervals95, "n_normal": self.n_normal, "n_defect": self.n_defect,
                "threshold": self.threshold, "not_measured": self.not_measured}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DetectionMetrics:
        """The metrics :meth:`to_dict` wrote."""
        return cls({k: float(d[k]) for k in KEYS if k in d}, dict(d["intervals95"]), int(d["n_normal"]),
                   int(d["n_defect"]), float(d["threshold"]))


def evaluate(normal: Sequence[float], defect: Sequence[float], threshold: float, n_boot: int = 1000,
             seed: int = 0) -> DetectionMetrics:
    """Metrics and intervals of held-out normal and defect scores at ``threshold`` (NaN scores, from
    unreadable images, left out)."""
    n = np.asarray(normal, dtype=float)
    d = np.asarray(defect, dtype=float)
    n, d = n[np.isfinite(n)], d[np.isfinite(d)]
    values = detection_metrics(n, d, threshold)
    scores = np.r_[n, d]
    kind = np.r_[np.zeros(len(n), bool), np.ones(len(d), bool)]

    def on(idx: np.ndarray) -> dict[str, float]:
        return detection_metrics(scores[idx][~kind[idx]], scores[idx][kind[idx]], threshold)

    intervals = without_degenerate(bootstrap(on, kind, n_boot, seed)) if n_boot and scores.size else {}
    intervals.pop("auroc", None)
    if "auroc" in values and (ci := auroc_interval(values["auroc"], int(d.size), int(n.size))):
        intervals["auroc"] = ci
    # the two rates: exact Clopper-Pearson over their own images (a bootstrap of 360/360 is [1, 1])
    intervals.update(rate_intervals({"normal_pass_rate": (int(np.sum(n <= threshold)), int(n.size)),
                                     "detection_rate": (int(np.sum(d > threshold)), int(d.size))}))
    return DetectionMetrics(values, intervals, int(n.size), int(d.size), float(threshold))

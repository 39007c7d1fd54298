"""Choosing a feature variant without test data: a pseudo-open-set protocol on the known classes.

Each known class in turn plays the unknown: the Mahalanobis scorer is fitted on the training
images of the other known classes, and scores the validation images of all of them; the held-out
class's images are the pseudo-unknowns. A variant's validation score is the mean AUROC over the
held-out classes (unknown positive, ``sklearn.metrics.roc_auc_score``). Only training and
validation images enter, so no test image can change the choice. The locked method stays the
study's headline whatever this selects: the selection is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from osd.osr.mahalanobis import MultiBlockMahalanobis

PROTOCOL = ("pseudo-open-set on known classes only: each known class in turn left out of the Mahalanobis fit "
            "(training images of the others), its validation images as pseudo-unknowns against the other "
            "classes' validation images; score = mean AUROC over the held-out classes")


def leave_one_class_out_auroc(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                              widths: tuple[int, ...], covariance: str, normalize: str) -> dict[str, float]:
    """AUROC per held-out known class (the classes need two others left to fit on)."""
    y_train, y_val = np.asarray(y_train).astype(str), np.asarray(y_val).astype(str)
    out: dict[str, float] = {}
    for held in np.unique(y_train):
        keep, pseudo = y_train != held, y_val == held
        if len(np.unique(y_train[keep])) < 2 or pseudo.all() or not pseudo.any():
            continue
        ref = x_val[~pseudo]  # multilayer standardisation on the remaining known classes only
        scorer = MultiBlockMahalanobis(widths, covariance, normalize).fit(x_train[keep], y_train[keep], X_ref=ref)
        out[str(held)] = float(roc_auc_score(pseudo, scorer.score_samples(x_val)))
    return out


@dataclass
class VariantSelection:
    """``select`` fills ``scores_`` (variant -> mean pseudo-open-set AUROC) and ``selected_``."""

    protocol: str = PROTOCOL
    scores_: dict[str, float] = field(default_factory=dict)
    per_class_: dict[str, dict[str, float]] = field(default_factory=dict)
    selected_: str | None = None

    def add(self, name: str, per_class: dict[str, float]) -> None:
        if per_class:
            self.per_class_[name] = per_class
            self.scores_[name] = float(np.mean(list(per_class.values())))

    def select(self, order: list[str]) -> VariantSelection:
        """The best mean validation AUROC; ties go to the earlier name in ``order`` (the locked method first)."""
        ranked = sorted(self.scores_, key=lambda n: (-round(self.scores_[n], 12), order.index(n)))
        self.selected_ = ranked[0] if ranked else None
        return self

    def to_dict(self) -> dict[str, object]:
        return {"protocol": self.protocol, "validation_auroc": self.scores_, "per_held_out_class": self.per_class_,
                "selected": self.selected_,
                "role": "recorded beside the locked method; the headline stays the locked method"}

"""The one-stage model over stored embeddings: fit the Mahalanobis scorer and tau on train and
validation partitions, score the test partitions, select a variant without test data.

Pure arrays in, arrays and fitted estimators out; the pipeline decides where they come from and
where they go. The decision rule itself lives in :mod:`osd.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osd.osr.embeddings import NORMAL_PART, PARTS, EmbeddedPart, Embeddings
from osd.types import JsonObject

# (features, pooling) of the variants reported beside the configured method
VARIANTS = {"penultimate": ("penultimate", "mean"), "multilayer": ("multilayer", "mean"),
            "multilayer_mean_std": ("multilayer", "mean_std")}

SCORE_SIGNS = {
    "penultimate": "higher = more unknown (smallest squared Mahalanobis distance to a known class mean, "
                   "penultimate-layer embedding)",
    "multilayer": "higher = more unknown (smallest squared Mahalanobis distance to a known class mean, per residual "
                  "stage, standardised on known validation images, averaged over the stages)",
}
__all__ = ["NORMAL_PART", "PARTS", "VARIANTS", "data_counts", "fit_scorer", "part_matrix", "select_variant",
           "test_arrays", "EvalArrays"]


def score_sign(features: str) -> str:
    return SCORE_SIGNS[features]


def part_matrix(part: EmbeddedPart, blocks: list[str]) -> np.ndarray:
    """The scorer's input for one stored partition (the penultimate embedding or stage statistics)."""
    from osd.osr.features import stack

    if len(part) == 0:
        return np.zeros((0, 0), np.float32)
    return stack(part.stats(), blocks)[0]


def fit_scorer(emb: Embeddings, features: str, pooling: str, covariance: str, normalize: str,
               acceptance: float, quiet: bool = False):
    """(blocks, fitted scorer, tau calibrator) from train and validation partitions only; ``quiet``: the
    caller says a small validation set once (:func:`osd.osr.thresholds.warn_small_samples`)."""
    from osd.osr.features import block_names, stack
    from osd.osr.mahalanobis import MultiBlockMahalanobis
    from osd.osr.thresholds import AcceptanceThreshold

    train, val = emb.train, emb.threshold
    blocks = block_names(list(train.stages), features, pooling)
    x_train, widths = stack(train.stats(), blocks)
    x_val = part_matrix(val, blocks)
    scorer = MultiBlockMahalanobis(tuple(widths), covariance, normalize).fit(
        x_train, np.asarray(train.labels), X_ref=x_val)
    tau = AcceptanceThreshold(acceptance, "tau (known validation images)", quiet).fit(scorer.score_samples(x_val))
    return blocks, scorer, tau


def select_variant(emb: Embeddings, covariance: str, normalize: str):
    """Every feature variant's pseudo-open-set AUROC on training + validation images, and the best one."""
    from osd.osr.features import block_names, stack
    from osd.osr.selection import VariantSelection, leave_one_class_out_auroc

    train, val = emb.train, emb.threshold
    sel, seen = VariantSelection(), set()
    for name, (features, pooling) in VARIANTS.items():
        blocks = block_names(list(train.stages), features, pooling)
        if tuple(blocks) in seen:  # a model without stages: every variant is the penultimate one
            continue
        seen.add(tuple(blocks))
        x_train, widths = stack(train.stats(), blocks)
        sel.add(name, leave_one_class_out_auroc(x_train, np.asarray(train.labels), part_matrix(val, blocks),
                                                np.asarray(val.labels), tuple(widths), covariance, normalize))
    return sel.select(list(VARIANTS))


@dataclass(frozen=True)
class EvalArrays:
    """The test images an evaluation scores, known then unknown, row for row: their logits, labels,
    paths (relative to neu.root), whether each is of an unknown class; ``x``: the scorer's input
    (with blocks); ``stage1``: each one's stage-1 score (the cascade's, joined by path)."""

    logits: np.ndarray
    labels: list[str]
    paths: list[str]
    is_unknown: np.ndarray
    x: np.ndarray | None = None
    stage1: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, keep: np.ndarray) -> EvalArrays:
        """The rows where ``keep`` (a boolean mask) holds."""
        idx = np.flatnonzero(keep)
        return EvalArrays(self.logits[keep], [self.labels[i] for i in idx], [self.paths[i] for i in idx],
                          self.is_unknown[keep], None if self.x is None else self.x[keep],
                          None if self.stage1 is None else self.stage1[keep])


def test_arrays(emb: Embeddings, blocks: list[str] | None = None) -> EvalArrays:
    """Known test then unknown test, concatenated; with ``blocks``, ``x`` is the scorer's input."""
    tk, tu = emb.test_known, emb.test_unknown
    x = None
    if blocks is not None:
        parts = [m for m in (part_matrix(tk, blocks), part_matrix(tu, blocks)) if len(m)]
        x = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return EvalArrays(np.concatenate([tk.logits, tu.logits]), list(tk.labels) + list(tu.labels),
                      list(tk.paths) + list(tu.paths), np.array([False] * len(tk) + [True] * len(tu)), x)


def data_counts(emb: Embeddings) -> JsonObject:
    """Images per partition that entered the result, and the ones skipped (with the reason)."""
    return {"images": {p: len(emb[p]) for p in (*PARTS, NORMAL_PART) if p in emb}, "skipped": dict(emb.skipped)}


def osr_settings(osr_section: JsonObject) -> JsonObject:
    """The osr settings the calibration depends on: the baselines are evaluated beside it, never
    fitted into it, so choosing them recomputes only the evaluation."""
    return {k: v for k, v in osr_section.items() if k != "baselines"}

"""The decision rules of both approaches and their labels, written once.

The study (``osd osr``, ``osd cascade``), ``osd predict`` and anything that exports the models
call these functions, so an image gets the same answer whichever path it takes. Scores follow
one sign: higher = more unknown (distance) or more anomalous (stage-1 score).

- One-stage: ``unknown`` when the Mahalanobis distance > tau, else the arg-max class.
- Cascade: stage 1 says ``no_defect`` when its score <= the PatchCore threshold; otherwise
  stage 2 names the arg-max class, or ``unknown`` when kappa is used and max softmax < kappa.
  ``strict`` keeps stage 1's ``no_defect``; ``ignore_no_defect`` lets stage 2 decide every image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNKNOWN = "unknown"
NO_DEFECT = "no_defect"
DECISION_LABELS = (UNKNOWN, NO_DEFECT)  # no class may carry these names
DEFECT = "defect"  # the detection study's answer for an image above the stage-1 threshold (not a class)
MODES = ("strict", "ignore_no_defect")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, whatever the logits' dtype: at saturation (a logit gap of ~17)
    float32 rounds max softmax to exactly 1.0 where float64 does not, which flips a kappa decision."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def closed_set(logits: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(arg-max class names, max softmax) of a batch of logits."""
    probs = softmax(logits)
    names = [str(c) for c in classes]
    closed = np.array([names[i] for i in probs.argmax(axis=1)], dtype=object) if len(probs) else np.zeros(0, object)
    return closed, probs.max(axis=1) if len(probs) else np.zeros(0)


def one_stage(distance: np.ndarray, tau: float, closed: np.ndarray) -> np.ndarray:
    """The locked one-stage rule: ``unknown`` when distance > tau, else the arg-max class."""
    return np.where(np.asarray(distance, dtype=np.float64) > tau, UNKNOWN, np.asarray(closed, dtype=object))


def confidence(msp: np.ndarray, kappa: float | None, closed: np.ndarray) -> np.ndarray:
    """Stage 2 (and the max-softmax baseline): ``unknown`` when max softmax < kappa; ``None`` disables it."""
    out = np.asarray(closed, dtype=object).copy()
    if kappa is not None:
        out[np.asarray(msp, dtype=np.float64) < kappa] = UNKNOWN
    return out


def cascade(stage1_score: np.ndarray, threshold: float, closed: np.ndarray, msp: np.ndarray,
            kappa: float | None) -> dict[str, np.ndarray]:
    """Predicted labels per cascade mode; a stage-1 score above ``threshold`` means defect."""
    defect = np.asarray(stage1_score, dtype=np.float64) > threshold
    stage2 = confidence(msp, kappa, closed)
    return {"strict": np.where(defect, stage2, NO_DEFECT), "ignore_no_defect": stage2}

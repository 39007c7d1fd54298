"""Three-outcome metrics: a test image of a line is normal, a known defect class or an unknown defect,
and an approach answers ``no_defect``, a class or ``unknown``.

Pure arrays in, numbers out. Definitions (every rate over the test images of that kind):

- ``normal_pass_rate``: normal images answered ``no_defect`` (good parts passed);
- ``defect_detection_rate``: defect images (known and unknown classes) answered anything but
  ``no_defect`` (defects caught);
- ``known_accuracy_detected``: known-class images answered their class, among those detected;
- ``unknown_rejection``: unknown-class images answered ``unknown``;
- ``three_outcome_accuracy``: every image answered its true outcome (normal -> ``no_defect``,
  known -> its class, unknown -> ``unknown``);
- ``balanced_three_outcome_accuracy``: the unweighted mean, over the kinds present, of each kind's
  share answered rightly (normal passed, known named, unknown rejected): free of the test mix, so the
  folder's number of good parts cannot decide its sign (the in-domain study's lead);
- ``three_outcome_macro_f1``: F1 per label over the K known classes, ``unknown`` and ``no_defect``
  (K + 2 labels; a label never predicted and never true counts 0, as scikit-learn's
  ``zero_division=0``), averaged.

Integer codes and bincounts instead of ``sklearn.metrics`` because a bootstrap calls this thousands
of times per run (as :class:`osd.metrics.EncodedResults`); ``tests/test_three_outcome.py`` checks
the values against scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from osd.decide import NO_DEFECT, UNKNOWN

KNOWN, UNKNOWN_KIND, NORMAL = 0, 1, 2  # kinds of test image (the bootstrap's strata)
KIND_NAMES = ("known", "unknown", "normal")
METRICS = ("normal_pass_rate", "defect_detection_rate", "known_accuracy_detected", "unknown_rejection",
           "three_outcome_accuracy", "balanced_three_outcome_accuracy", "three_outcome_macro_f1")
NOT_RATES = ("balanced_three_outcome_accuracy", "three_outcome_macro_f1")  # not a count k / n: bootstrap


def kinds(roles: Sequence[str]) -> np.ndarray:
    """Integer kinds of ``known`` / ``unknown`` / ``normal`` roles."""
    return np.array([KIND_NAMES.index(r) for r in roles], dtype=np.int64)


def true_outcomes(labels: Sequence[str], kind: np.ndarray) -> np.ndarray:
    """The answer each image should get: its class (known), ``unknown``, or ``no_defect`` (normal)."""
    labels = np.asarray(labels, dtype=object)
    return np.where(kind == NORMAL, NO_DEFECT, np.where(kind == UNKNOWN_KIND, UNKNOWN, labels))


class ThreeOutcome:
    """One approach's answers on the test images, encoded once for many bootstrap replicates."""

    def __init__(self, true: Sequence[str], pred: Sequence[str], kind: np.ndarray, classes: Sequence[str]):
        classes = [c for c in classes if c != NO_DEFECT]  # a normal-class variant's extra class is an outcome
        self.k = len(classes)
        code = {c: i for i, c in enumerate(classes)}
        code[UNKNOWN], code[NO_DEFECT] = self.k, self.k + 1
        self.kind = np.asarray(kind, dtype=np.int64)
        self.t = np.array([code.get(x, self.k + 2) for x in np.asarray(true, dtype=object)], dtype=np.int64)
        self.p = np.array([code.get(x, self.k + 2) for x in np.asarray(pred, dtype=object)], dtype=np.int64)

    def metrics(self, idx: np.ndarray, keys: Sequence[str] = METRICS) -> dict[str, float]:
        t, p, kind = self.t[idx], self.p[idx], self.kind[idx]
        normal, defect, known = kind == NORMAL, kind != NORMAL, kind == KNOWN
        passed = p == self.k + 1
        nan = float("nan")
        detected_known = known & ~passed
        out = {
            "normal_pass_rate": float(passed[normal].mean()) if normal.any() else nan,
            "defect_detection_rate": float((~passed[defect]).mean()) if defect.any() else nan,
            "known_accuracy_detected": float((p == t)[detected_known].mean()) if detected_known.any() else nan,
            "unknown_rejection": float((p[kind == UNKNOWN_KIND] == self.k).mean()) if (kind == UNKNOWN_KIND).any()
            else nan,
            "three_outcome_accuracy": float(np.mean(p == t)) if len(t) else nan,
        }
        if "balanced_three_outcome_accuracy" in keys:
            right = p == t
            per_kind = [float(right[kind == k].mean()) for k in (KNOWN, UNKNOWN_KIND, NORMAL) if (kind == k).any()]
            out["balanced_three_outcome_accuracy"] = float(np.mean(per_kind)) if per_kind else nan
        if "three_outcome_macro_f1" in keys:
            n = self.k + 3
            cm = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
            tp = np.diag(cm)[: self.k + 2].astype(float)
            fp = cm.sum(axis=0)[: self.k + 2] - tp
            fn = cm.sum(axis=1)[: self.k + 2] - tp
            den = 2 * tp + fp + fn
            out["three_outcome_macro_f1"] = float(np.mean(np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)))
        return {k: out[k] for k in keys}

    def rate_counts(self) -> dict[str, tuple[int, int]]:
        """(k, n) of every single proportion over all the test images, for its exact interval
        (:mod:`osd.proportion`); macro-F1 is not a count."""
        t, p, kind = self.t, self.p, self.kind
        normal, defect, known, unk = kind == NORMAL, kind != NORMAL, kind == KNOWN, kind == UNKNOWN_KIND
        passed = p == self.k + 1
        detected_known = known & ~passed
        return {"normal_pass_rate": (int(passed[normal].sum()), int(normal.sum())),
                "defect_detection_rate": (int((~passed[defect]).sum()), int(defect.sum())),
                "known_accuracy_detected": (int((p == t)[detected_known].sum()), int(detected_known.sum())),
                "unknown_rejection": (int((p[unk] == self.k).sum()), int(unk.sum())),
                "three_outcome_accuracy": (int((p == t).sum()), int(t.size))}

    def intervals(self, n_boot: int, seed: int) -> dict[str, list[float]]:
        """95% intervals of every metric over the test images: the rates exact (Clopper-Pearson over
        their own images), macro-F1 the bootstrap stratified by kind (none where every replicate is
        equal: resampling cannot bound it)."""
        from osd.metrics import bootstrap, without_degenerate
        from osd.proportion import rate_intervals

        ci = without_degenerate(bootstrap(lambda idx: self.metrics(idx, NOT_RATES), self.kind, n_boot, seed)
                                ) if n_boot else {}
        return {**ci, **rate_intervals(self.rate_counts())}

    def normal_calls(self) -> dict[str, float]:
        """What the approach answered on the normal images: shares of no_defect, a known class, unknown."""
        p = self.p[self.kind == NORMAL]
        if not len(p):
            return {}
        return {"no_defect": float(np.mean(p == self.k + 1)), "a_known_class": float(np.mean(p < self.k)),
                "unknown": float(np.mean(p == self.k))}


def image_auroc_interval(kind: np.ndarray, score: np.ndarray, n_boot: int = 0, seed: int = 0) -> list[float] | None:
    """The 95% interval of :func:`image_auroc` (defect kinds against normal) at its edges: exact at a
    perfect separation, Newcombe's score interval otherwise (:func:`osd.ranking_intervals.auroc_interval`;
    no bootstrap, so ``n_boot`` and ``seed`` are not used); None without both kinds of images."""
    from osd.ranking_intervals import auroc_interval

    defect = np.asarray(kind) != NORMAL
    s = np.asarray(score, dtype=np.float64)
    if not (defect.any() and (~defect).any()):
        return None
    return auroc_interval(image_auroc(defect, s), int(defect.sum()), int((~defect).sum()))


def image_auroc(defect: np.ndarray, score: np.ndarray) -> float:
    """AUROC of ``score`` (higher = more anomalous) for defect (positive) against normal images."""
    from osd.metrics import EncodedResults

    defect = np.asarray(defect, dtype=bool)
    if defect.all() or not defect.any():
        return float("nan")
    return EncodedResults._auroc(defect, np.asarray(score, dtype=np.float64))

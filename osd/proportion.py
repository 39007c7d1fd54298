"""The 95% interval of a single rate k / n (an accuracy, a pass rate, a detection or rejection rate).

Every single proportion osd reports gets the exact **Clopper-Pearson** interval of its count over
its own images (scipy's ``binomtest``): its coverage is at least the nominal level for every true
rate, 0 and 1 included. A percentile bootstrap of a rate is wrong exactly where a reader looks
first: a rate observed at 72/72 resamples to 1.000 in every replicate, a zero-width ``[1, 1]``,
where Clopper-Pearson gives [0.950, 1]. Differences between two approaches keep the paired
bootstrap (:func:`osd.metrics.paired_difference`); ranking metrics (AUROC, AUPR, FPR@95, OSCR) and
macro-F1, which are not counts, keep the stratified bootstrap.

The images of a rate are counted as independent; where they are not (crops of one strip), the
caller counts the independent units or says that the interval is per crop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

METHOD = "Clopper-Pearson (exact binomial)"
LEVEL = 0.95


def clopper_pearson(k: int, n: int, confidence: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n; (NaN, NaN) for n = 0."""
    from scipy.stats import binomtest

    k, n = int(k), int(n)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"a count of {k} out of {n} is not a proportion")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def rate_intervals(counts: Mapping[str, tuple[int, int]], confidence: float = LEVEL) -> dict[str, list[float]]:
    """``{name: [low, high]}`` for every ``{name: (k, n)}`` with n > 0 (a rate over no image has none)."""
    return {name: list(clopper_pearson(k, n, confidence)) for name, (k, n) in counts.items() if n > 0}


def count_of(rate: float, n: int) -> int:
    """The count behind a rate reported over ``n`` images (rates are stored as floats)."""
    if not math.isfinite(rate) or n <= 0:
        raise ValueError(f"no count behind a rate of {rate} over {n} images")
    return int(round(rate * n))

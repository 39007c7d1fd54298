"""The answer to the research question from the runs' paired comparisons: what the data allow, no more.

The unit of replication is the **split** (which classes are unknown); seeds are nested in splits
and share their test images, so they are not independent evidence. Hence:

- **Per run** (split x seed): the paired bootstrap over that run's test images gives a difference,
  its 95% percentile interval and a two-sided p-value from the same replicates
  (:func:`osd.metrics.bootstrap_p_value`). Holm's step-down correction is applied to those
  p-values over the runs compared; a run counts as significant after the correction only if it is
  significant before it (its interval excludes zero), so the correction can only remove runs.
  Without replicates (``stats.bootstrap = 0``) a run is "not tested".
  Holm can reject only if the smallest p-value a run can reach, 2 / (B + 1) with B replicates,
  is at most alpha / m for m runs: below that B (:func:`replicates_needed`) the verdict says that
  the runs are untestable at this B, never "0 of m runs".
- **Overall**: seeds are averaged within their split first, then a Student t interval over the
  split means (df = splits - 1) whose variance is **floored by the seeds' own noise**: the split
  means cannot vary less than the pooled within-split seed variance divided by the seeds per split
  (a random-effects reading: var(split mean) = between-split variance + seed variance / seeds), so
  the larger of the observed between-split variance and that floor is used
  (:func:`split_level_interval`). A difference of rates lies in [-1, 1] and its interval is cut to
  that range. One approach is called better overall only with at least :data:`MIN_SPLITS` splits
  and that interval excluding zero; with fewer splits no overall claim is made and the per-run
  results stand alone.
- A difference that is **the same in every split** (it does not depend on which classes are
  unknown: the cascade's normal pass rate is set by stage 1 and the test normals every split
  shares) is no evidence over splits: no verdict, the value is reported once with its interval over
  its own images (:data:`SPLIT_INVARIANT`).
- The splits share their known classes' test images (a class is known in several splits), so an
  overall claim is about these splits of this data set, not about new data sets.

Every metric compared here is higher-is-better (accuracies, rates, macro-F1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

MIN_SPLITS = 3  # with fewer, a t interval over split means has too few degrees of freedom to claim anything
ALPHA = 0.05

ONE_STAGE_BETTER = "one-stage better"
CASCADE_BETTER = "cascade better"
NO_CLEAR_DIFFERENCE = "no clear difference"
NO_OVERALL_CLAIM = "no overall claim"
SPLIT_INVARIANT = "the same in every split"
INTERVAL_RULE = ("95% t interval over the split means (df = splits - 1; seeds averaged within their split first), its "
                 "variance at least the pooled within-split seed variance / seeds per split")


@dataclass(frozen=True)
class RunComparison:
    """One run's paired comparison (first approach minus second) on one metric."""

    split: str
    seed: int
    difference: float
    ci95: tuple[float, float] | None
    p_value: float | None
    excludes_zero: bool | None  # None: not tested (no bootstrap replicates)
    nan_replicates: int = 0
    replicates: int = 0
    holm_significant: bool | None = None

    @property
    def tested(self) -> bool:
        return self.p_value is not None and self.excludes_zero is not None

    @property
    def favours(self) -> str | None:
        """The approach this run favours after Holm's correction (None: neither, or not tested)."""
        if not self.holm_significant:
            return None
        return ONE_STAGE_BETTER if self.difference > 0 else CASCADE_BETTER


@dataclass(frozen=True)
class MetricVerdict:
    """The overall reading of one metric of one comparison, and the runs it rests on."""

    comparison: str  # e.g. "ignore_no_defect" or "three outcomes, strict"
    metric: str
    runs: tuple[RunComparison, ...]
    split_means: dict[str, float]
    mean_difference: float
    ci95: tuple[float, float] | None  # t interval over split means; None with one split
    interval: str
    claim: str
    reason: str

    @property
    def n_splits(self) -> int:
        return len(self.split_means)

    @property
    def n_seeds(self) -> int:
        return len({r.seed for r in self.runs})

    @property
    def tested_runs(self) -> int:
        return sum(r.tested for r in self.runs)

    @property
    def replicates(self) -> int:
        """The fewest bootstrap replicates of a tested run (what bounds its smallest p-value)."""
        return min((r.replicates for r in self.runs if r.tested and r.replicates), default=0)

    @property
    def holm_can_reject(self) -> bool:
        """Whether any tested run could be significant after Holm's correction at this B."""
        return holm_can_reject(self.replicates, self.tested_runs)

    def count(self, side: str, corrected: bool = True) -> int:
        """Runs whose test favours ``side`` (after Holm, or before it with ``corrected=False``)."""
        sign = 1 if side == ONE_STAGE_BETTER else -1
        if corrected:
            return sum(r.favours == side for r in self.runs)
        return sum(bool(r.excludes_zero) and np.sign(r.difference) == sign for r in self.runs)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.update(n_splits=self.n_splits, n_seeds=self.n_seeds, tested_runs=self.tested_runs,
                 runs_one_stage_better=self.count(ONE_STAGE_BETTER), runs_cascade_better=self.count(CASCADE_BETTER),
                 runs_one_stage_better_uncorrected=self.count(ONE_STAGE_BETTER, False),
                 runs_cascade_better_uncorrected=self.count(CASCADE_BETTER, False),
                 holm_can_reject=self.holm_can_reject,
                 replicates_needed=replicates_needed(self.tested_runs) if self.tested_runs else None)
        return d


def holm(p_values: Sequence[float | None], alpha: float = ALPHA) -> list[bool | None]:
    """Holm's step-down rejections (None where a p-value is None: not tested, not counted in m)."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[bool | None] = [None] * len(p_values)
    m = len(idx)
    order = sorted(idx, key=lambda i: p_values[i])
    stopped = False
    for rank, i in enumerate(order):
        stopped = stopped or p_values[i] > alpha / (m - rank)
        out[i] = not stopped
    return out


def replicates_needed(m: int, alpha: float = ALPHA) -> int:
    """The fewest bootstrap replicates B at which Holm over ``m`` runs can reject at all: the smallest
    p-value a run reaches, 2 / (B + 1), must be at most Holm's first threshold alpha / m."""
    return max(1, math.ceil(2 * m / alpha - 1 - 1e-9))


def holm_can_reject(replicates: int, m: int, alpha: float = ALPHA) -> bool:
    """True when ``m`` runs with ``replicates`` bootstrap replicates each can give a Holm rejection."""
    return m > 0 and replicates > 0 and 2 / (replicates + 1) <= alpha / m + 1e-12


def split_level_interval(by_split: dict[str, Sequence[float]], level: float = 0.95,
                         bounds: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, tuple[float, float] | None]:
    """The mean of the split means and its t interval (df = splits - 1), the variance of a split mean
    floored by the seeds' own noise (pooled within-split variance / seeds in the split, averaged over
    splits), cut to ``bounds``. None with fewer than two splits."""
    from scipy.stats import t

    groups = [np.asarray(v, dtype=float) for v in by_split.values() if len(v)]
    means = np.array([g.mean() for g in groups])
    if means.size < 2:
        return (float(means[0]) if means.size else float("nan")), None
    between = float(means.var(ddof=1))
    df_within = sum(g.size - 1 for g in groups)
    floor = 0.0
    if df_within > 0:
        pooled = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / df_within
        floor = pooled * float(np.mean([1 / g.size for g in groups]))
    half = float(t.ppf((1 + level) / 2, means.size - 1) * np.sqrt(max(between, floor) / means.size))
    mean = float(means.mean())
    return mean, (max(mean - half, bounds[0]), min(mean + half, bounds[1]))


def same_in_every_split(by_split: dict[str, Sequence[float]], tol: float = 1e-12) -> bool:
    """True when two or more splits all give the same value (seed by seed): the quantity does not vary
    by split, so a spread over splits is zero by construction, not evidence."""
    values = [float(x) for v in by_split.values() for x in v]
    return len(by_split) > 1 and max(values) - min(values) <= tol


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student t interval of the mean of ``values`` (df = n - 1); None with fewer than two values."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    half = float(t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean() - half), float(v.mean() + half)


def with_holm(runs: Sequence[RunComparison], alpha: float = ALPHA) -> tuple[RunComparison, ...]:
    """The runs with Holm's correction applied over them; never significant after it when not before."""
    from dataclasses import replace

    rejected = holm([r.p_value if r.tested else None for r in runs], alpha)
    return tuple(replace(r, holm_significant=None if rej is None else bool(rej and r.excludes_zero))
                 for r, rej in zip(runs, rejected))


def overall(comparison: str, metric: str, runs: Sequence[RunComparison], min_splits: int = MIN_SPLITS
            ) -> MetricVerdict:
    """The verdict over ``runs``: seeds averaged within their split, a t interval over split means."""
    finite = [r for r in runs if np.isfinite(r.difference)]
    runs = with_holm(finite)
    by_split: dict[str, list[float]] = {}
    for r in runs:
        by_split.setdefault(r.split, []).append(r.difference)
    means = {s: float(np.mean(v)) for s, v in by_split.items()}
    mean, ci = split_level_interval(by_split)
    floor = ("variance at least the seeds' own" if any(len(v) > 1 for v in by_split.values())
             else "one seed per split: no seed variance to floor it by")
    interval = (f"95% t interval over {len(means)} split means (df = {len(means) - 1}; seeds averaged within "
                f"their split first; {floor})")
    if same_in_every_split(by_split):
        ci = None
        claim = SPLIT_INVARIANT
        reason = ("the difference is the same in every split (as the cascade's normal pass rate is: one stage 1, one "
                  "set of test normals): a zero spread over splits is no evidence; it is reported once, with its "
                  "interval over its own images")
    elif len(means) < min_splits:
        claim = NO_OVERALL_CLAIM
        reason = (f"{len(means)} split(s): an overall claim needs at least {min_splits} splits (the unit of "
                  "replication is the split; seeds share its test images); read the per-run results")
    elif ci[0] > 0:
        claim, reason = ONE_STAGE_BETTER, "the interval over split means lies above zero"
    elif ci[1] < 0:
        claim, reason = CASCADE_BETTER, "the interval over split means lies below zero"
    else:
        claim, reason = NO_CLEAR_DIFFERENCE, "the interval over split means includes zero"
    return MetricVerdict(comparison, metric, runs, means, mean, ci, interval, claim, reason)


def run_comparison(split: str, seed: int, v: dict[str, object]) -> RunComparison:
    """A run's comparison from its ``paired_difference`` entry (an older entry without a p-value is not tested)."""
    ci = v.get("ci95")
    ci = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    p = v.get("p_value")
    ex = v.get("excludes_zero") if ci is not None else None
    return RunComparison(split, int(seed), float(v["difference"]), ci, None if p is None else float(p),
                         None if p is None else ex, int(v.get("nan_replicates") or 0), int(v.get("replicates") or 0))

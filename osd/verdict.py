"""The answer to the research question from the runs' paired comparisons: what the data allow, no more.

The unit of replication is the **split** (which classes are unknown); seeds are nested in splits.
The design is repeated random sub-sampling within each split: every seed partitions the split's images
anew (train, validation, test), so two seeds of a split test on overlapping but different image sets,
and each seed has its own stage-1 fit and normal partition. Hence:

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
- A difference that is **the same in every split** by construction (it does not depend on which
  classes are unknown: the cascade's normal pass rate is set by stage 1 and the test normals every
  split of a seed shares), decided seed by seed (each seed has its own fit), is no evidence over
  splits: no verdict, the value is reported per seed with its interval over its own images
  (:data:`SPLIT_INVARIANT`). A value equal in every split by coincidence keeps its splits as
  replicates, its interval never of zero width (:func:`image_noise_floor`).
- The splits share their known classes' test images (a class is known in several splits), so an
  overall claim is about these splits of this data set, not about new data sets.

Every metric compared here is higher-is-better (accuracies, rates, macro-F1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from osd.design_interval import (  # noqa: F401 - the complete design's interval, read with the verdict
    DesignInterval,
    complete_design_interval,
    design_interval_words,
    joint_image_variance,
)

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
    complete_design: bool = False  # the interval is for the mean over every split of a complete design
    image_noise: bool = False  # with it, the test images' shared noise (a joint bootstrap) is in the interval

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
        """The fewest finite bootstrap replicates of a tested run (what bounds its smallest p-value): NaN
        replicates are left out of its p-value, so they lower the B that Holm's check must use."""
        return min((r.replicates - r.nan_replicates for r in self.runs if r.tested and r.replicates), default=0)

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
                         bounds: tuple[float, float] = (-1.0, 1.0), image_floor: float = 0.0
                         ) -> tuple[float, tuple[float, float] | None]:
    """The mean of the split means and its t interval (df = splits - 1), the variance of a split mean
    floored by the seeds' own noise (pooled within-split variance / seeds in the split, averaged over
    splits), cut to ``bounds``. None with fewer than two splits. Where both leave zero (every split and
    seed the same value), ``image_floor`` (a split mean's variance from its test images) is the floor, so
    the interval never has zero width; None where that is zero too."""
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
    var = max(between, floor) if max(between, floor) > 1e-18 else image_floor
    mean = float(means.mean())
    if var <= 1e-18:
        return mean, None
    half = float(t.ppf((1 + level) / 2, means.size - 1) * np.sqrt(var / means.size))
    return mean, (max(mean - half, bounds[0]), min(mean + half, bounds[1]))



@dataclass(frozen=True)
class NonInferiority:
    """Is a cheaper or faster setting non-inferior to the reference on a higher-is-better validation metric?"""

    mean_difference: float  # setting minus reference
    lower: float  # one-sided 95% lower bound of the difference
    margin: float
    reference_mean: float
    non_inferior: bool
    informative: bool  # False: the reference sits at its ceiling, where a loss of the margin would hardly show

    @property
    def verdict(self) -> str:
        if not self.informative:
            return "not informative (the reference at its ceiling)"
        return "non-inferior" if self.non_inferior else "NOT shown non-inferior"


def non_inferiority(differences: Mapping[str, Sequence[float]], reference: Sequence[float], margin: float = 0.01
                    ) -> NonInferiority:
    """The project's non-inferiority rule: the paired differences (setting minus reference) of each split,
    averaged within their split, then a one-sided 95% t bound over the split means, its variance floored
    by the seeds' own (:func:`split_level_interval` at the 90% two-sided level; one split: the t bound
    over its seeds). Non-inferior when that bound lies above -``margin``. A reference whose mean is above
    1 - 2 x margin is at its ceiling: "not informative", never non-inferior."""
    groups = {s: list(v) for s, v in differences.items() if len(v)}
    if len(groups) == 1:
        seeds = next(iter(groups.values()))
        mean, ci = float(np.mean(seeds)), t_interval(seeds, level=0.90)
    else:
        mean, ci = split_level_interval(groups, level=0.90)
    lower = ci[0] if ci else float("nan")
    ref = float(np.mean(reference)) if len(reference) else float("nan")
    informative = bool(np.isfinite(ref) and ref <= 1 - 2 * margin)
    return NonInferiority(mean, lower, margin, ref, bool(informative and ci is not None and lower > -margin),
                          informative)


# Metrics that can be the same in every split by construction: the cascade's stage 1 alone decides them (one
# PatchCore fit and one set of test normals per seed, whatever classes are hidden). Any other metric equal in
# every split (a closed-set accuracy of 1.0 in each) is equal by coincidence, and its splits stay replicates.
SPLIT_INVARIANT_METRICS = ("normal_pass_rate", "defect_detection_rate")


def same_in_every_split(values: Sequence[tuple[str, int, float]], tol: float = 1e-12) -> bool:
    """True when, **seed by seed**, every split gives the same value (and some seed has two or more splits):
    each seed has its own stage-1 fit and normal partition, so such a value may differ between seeds while
    it does not vary by split; a spread over splits is then zero by construction, not evidence."""
    by_seed: dict[int, list[float]] = {}
    for _, seed, v in values:
        by_seed.setdefault(int(seed), []).append(float(v))
    several = [v for v in by_seed.values() if len(v) > 1]
    return bool(several) and all(max(v) - min(v) <= tol for v in several)


def invariant_over_splits(metric: str, values: Sequence[tuple[str, int, float]]) -> bool:
    """A value is treated as the same in every split only when it is so by construction (its metric is in
    :data:`SPLIT_INVARIANT_METRICS`) and, seed by seed, the data agree (:func:`same_in_every_split`)."""
    return metric in SPLIT_INVARIANT_METRICS and same_in_every_split(values)


def image_noise_floor(runs: Sequence[RunComparison]) -> float:
    """The variance a split mean has at least from its runs' own test images: the mean over runs of
    ((interval width) / (2 x 1.96))^2 divided by the seeds per split; 0 without run intervals. It bounds
    an interval over splits away from zero width where every split happens to give the same value."""
    widths = [((r.ci95[1] - r.ci95[0]) / (2 * 1.959964)) ** 2 for r in runs if r.ci95 is not None]
    if not widths:
        return 0.0
    seeds = max(1, round(len(runs) / max(1, len({r.split for r in runs}))))
    return float(np.mean(widths)) / seeds


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


def overall(comparison: str, metric: str, runs: Sequence[RunComparison], min_splits: int = MIN_SPLITS,
            hidden: Mapping[str, Sequence[str]] | None = None, image_variance: float | None = None) -> MetricVerdict:
    """The verdict over ``runs``: seeds averaged within their split, a t interval over split means; or,
    with ``hidden`` (the complete design: each split's hidden classes) and every split of it run, the
    interval of :func:`complete_design_interval` for the mean over all of them."""
    finite = [r for r in runs if np.isfinite(r.difference)]
    runs = with_holm(finite)
    by_split: dict[str, list[float]] = {}
    for r in runs:
        by_split.setdefault(r.split, []).append(r.difference)
    means = {s: float(np.mean(v)) for s, v in by_split.items()}
    images = False
    if hidden and set(by_split) == set(hidden) and len(hidden) >= min_splits:
        d = complete_design_interval([(r.split, r.seed, r.difference) for r in runs], hidden,
                                     image_variance=image_variance)
        mean, ci, interval, images = d.mean, d.ci95, design_interval_words(d), d.images
    else:
        mean, ci = split_level_interval(by_split, image_floor=image_noise_floor(runs))
        floor = ("variance at least the seeds' own" if any(len(v) > 1 for v in by_split.values())
                 else "one seed per split: no seed variance to floor it by")
        interval = (f"95% t interval over {len(means)} split means (df = {len(means) - 1}; seeds averaged within "
                    f"their split first; {floor})")
    if invariant_over_splits(metric, [(r.split, r.seed, r.difference) for r in runs]):
        ci = None
        claim = SPLIT_INVARIANT
        reason = ("the difference is the same in every split of a seed (as the cascade's normal pass rate is: one "
                  "stage 1 and one set of test normals per seed): a zero spread over splits is no evidence; it is "
                  "reported per seed, with its interval over its own images")
    elif len(means) < min_splits:
        claim = NO_OVERALL_CLAIM
        reason = (f"{len(means)} split(s): an overall claim needs at least {min_splits} splits (the unit of "
                  "replication is the split; its seeds re-partition its images, so they are not independent "
                  "splits); read the per-run results")
    elif ci is None and runs and all(r.tested and r.ci95 is None for r in runs) and \
            max(r.difference for r in runs) - min(r.difference for r in runs) <= 1e-12:
        claim, reason = NO_CLEAR_DIFFERENCE, (f"both approaches decide alike on every test image of every run (the "
                                              f"difference is {runs[0].difference:+.3f} in each, every bootstrap "
                                              "replicate equal): there is no difference to test")
    elif ci is None:
        claim, reason = NO_OVERALL_CLAIM, "no interval: too few runs to estimate the noise"
    elif ci[0] > 0:
        claim, reason = ONE_STAGE_BETTER, "the interval over split means lies above zero"
    elif ci[1] < 0:
        claim, reason = CASCADE_BETTER, "the interval over split means lies below zero"
    else:
        claim, reason = NO_CLEAR_DIFFERENCE, "the interval over split means includes zero"
    design = bool(hidden and set(by_split) == set(hidden) and len(hidden) >= min_splits)
    if design and claim in (ONE_STAGE_BETTER, CASCADE_BETTER, NO_CLEAR_DIFFERENCE):
        reason = reason.replace("the interval over split means", "the interval for the complete design's mean")
    return MetricVerdict(comparison, metric, runs, means, mean, ci, interval, claim, reason, design, images)


def run_comparison(split: str, seed: int, v: dict[str, object]) -> RunComparison:
    """A run's comparison from its ``paired_difference`` entry (an older entry without a p-value is not tested)."""
    ci = v.get("ci95")
    ci = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    p = v.get("p_value")
    ex = v.get("excludes_zero") if ci is not None else None
    if ci is not None and ci[1] - ci[0] <= 1e-12:
        # every replicate gave the same difference (both approaches decided alike on every image drawn): no
        # interval is shown, never a zero-width one; tested, and not significant
        ci, ex = None, (False if p is not None else None)
    return RunComparison(split, int(seed), float(v["difference"]), ci, None if p is None else float(p),
                         None if p is None else ex, int(v.get("nan_replicates") or 0), int(v.get("replicates") or 0))

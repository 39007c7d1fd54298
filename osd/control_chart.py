"""Control charts for the line: a Phase I baseline from the line itself, Phase II charts at a stated rate.

Pure statistics (arrays and rows in, numbers out); :mod:`osd.pipeline.monitor` reads and stores.

**What is charted.** Each batch (a window of ``w`` consecutive images) gives one number per
statistic (:data:`STATISTICS`): the share stage 1 flags, the interquartile mean (the mean of the middle
half: :func:`central`) of the stage-1 scores of the images it passes and of the log one-stage distances
of the images the classifier judges, and the share of
those called unknown (a share on Anscombe's arcsine scale: :func:`charted`). A statistic is
standardised by the **baseline**: the mean and the standard
deviation of that statistic over the baseline's own windows, so the variation between windows that
the line normally makes (runs of part variants, coil after coil) is in the limits, as on an
individuals chart. Where rows carry a variant (a column named by the user, or the image's parent
folder), each variant gets its own baseline and its own charts.

**An EWMA chart per statistic** (lambda = 0.1) of z, beside nothing else: an alarm when |e_t| exceeds
L times its standard deviation. It finds a small persistent change (weeks of brightness -20%) that a
batch-by-batch test misses, and a large one within a few batches. A Shewhart (individuals) chart beside
it was tried and dropped: a window's median over the images a line repeats is far from normal (on the
real line 1.3-1.9% of windows beyond 3.5 sd, where a normal law has 0.05%), and its normal limits gave
1.4-2.3 false alarms per 10,000 images where 1 was stated; the EWMA, an average of many windows, is
robust to that (Borror, Montgomery and Runger, 1999).

**The false-alarm rate is the user's.** ``false_alarm_every`` = N images (one false alarm per N images
of a line that has not changed, 10,000 by default): over C charts of batches of w images, each chart
gets an in-control average run length of C x N / w batches (Bonferroni over charts); L comes from the
Markov-chain approximation of the EWMA's run length (Brook and Evans, 1972; 101 states), bisected, then
moved out by the baseline's own error (its mean comes from m windows: 1.645 / sqrt(m) of a window's
spread, so the rate holds for 90% of baselines, a "guaranteed in-control performance" in the sense of the
Phase I literature); a statistic's spread is at least what its rows alone imply
(:func:`resampled_windows`). ``examples/bench_monitor_line.py`` measures the false alarms per 10,000
images that the configuration that ships actually gives.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from osd.types import JsonObject

STATISTICS = ("stage1_flagged", "stage1_scores", "distances", "unknown_share")
HUMAN = {"stage1_flagged": "share flagged defect", "stage1_scores": "stage-1 score (passed, middle half's mean)",
         "distances": "log distance (judged, middle half's mean)", "unknown_share": "share called unknown"}
LAMBDA = 0.1  # robust to the statistics' non-normal tails (Borror, Montgomery and Runger, 1999)
MIN_WINDOWS = 10  # a baseline's mean and spread from fewer windows move the limits more than the rate allows
MIN_VALUES = 5  # a statistic of a window needs this many images behind it
FALSE_ALARM_EVERY = 10_000  # images per false alarm, by default
GUARANTEE = 1.645  # the baseline mean's error allowed for: its 95th percentile in size (the rate held in 90% of baselines)


SHARES = ("stage1_flagged", "unknown_share")


def central(values: np.ndarray) -> float:
    """The interquartile mean (scipy's ``trim_mean`` cutting a quarter at each end): as robust to a few
    outlying images (a steady share of unknowns) as the median, and, unlike a window's median over the
    images a line repeats, nearly normal from window to window (measured on the real line: the median left
    1.3-1.9% of windows beyond 3.5 sd, and its chart missed the stated rate)."""
    from scipy.stats import trim_mean

    return float(trim_mean(values, 0.25))


def window_statistics(rows: Sequence[Mapping[str, object]], stage1_threshold: float | None) -> dict[str, float]:
    """The charted statistics of one window of validated predict rows (numbers already floats), and for each
    share the count of images behind it (``n:<name>``); a statistic with fewer than :data:`MIN_VALUES`
    images behind it is left out."""
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    out: dict[str, float] = {}
    judged = ok
    if stage1_threshold is not None:
        s1 = np.array([float(r["stage1_score"]) for r in ok if r.get("stage1_score") not in (None, "")])
        if s1.size >= MIN_VALUES:
            out["stage1_flagged"], out["n:stage1_flagged"] = float(np.mean(s1 > stage1_threshold)), float(s1.size)
        passed = s1[s1 <= stage1_threshold]
        if passed.size >= MIN_VALUES:
            out["stage1_scores"] = central(passed)
        judged = [r for r in ok if r.get("stage1_score") not in (None, "")
                  and float(r["stage1_score"]) > stage1_threshold]
    d = np.array([float(r["one_stage_score"]) for r in judged if r.get("one_stage_score") not in (None, "")])
    if d.size >= MIN_VALUES:
        out["distances"] = central(np.log1p(np.maximum(d, 0.0)))
        out["unknown_share"] = float(np.mean([r.get("one_stage") == "unknown" for r in judged
                                              if r.get("one_stage_score") not in (None, "")]))
        out["n:unknown_share"] = float(d.size)
    return out


def windows(rows: Sequence[Mapping[str, object]], size: int) -> list[list[Mapping[str, object]]]:
    """Consecutive windows of ``size`` rows; a last, shorter one is kept only at half a window or more."""
    out = [list(rows[i:i + size]) for i in range(0, len(rows), size)]
    return [w for w in out if len(w) >= max(1, size // 2)]


@dataclass(frozen=True)
class Limits:
    """One statistic's baseline: its mean and spread over the baseline's windows, on the charted scale."""

    mean: float
    sd: float
    windows: int


def charted(name: str, stats: Mapping[str, float]) -> float:
    """The value a chart standardises: a share on Anscombe's arcsine scale, asin(sqrt((k + 3/8) / (n + 3/4))),
    where a binomial count's spread no longer depends on its rate and its skew at a few counts in a window
    is mostly gone (a share of 2 in 25 has a long upper tail that a normal limit under-reads); a location as
    it is."""
    x = float(stats[name])
    if name not in SHARES:
        return x
    n = float(stats.get(f"n:{name}", 0.0)) or 1.0
    return math.asin(math.sqrt((x * n + 0.375) / (n + 0.75)))


def baseline_limits(per_window: Sequence[Mapping[str, float]],
                    resampled: Sequence[Mapping[str, float]] = ()) -> dict[str, Limits]:
    """Each statistic's mean and spread over the baseline windows that have it (at least :data:`MIN_WINDOWS`).

    The spread is the larger of the windows' own standard deviation (the line's variation between windows:
    runs, coils) and that of ``resampled`` windows (the baseline's rows drawn with replacement into windows
    of the same size: the spread the rows alone imply, estimated from many windows where the baseline has
    few). A share's spread is at least the binomial one of its typical window (a baseline in which no image
    was called unknown must not make the first unknown an alarm: its share is taken as at least half an
    image over the whole baseline); a location's is kept above 0."""
    out = {}
    for name in STATISTICS:
        v = np.array([charted(name, w) for w in per_window if name in w], float)
        if v.size < MIN_WINDOWS:
            continue
        sd = float(v.std(ddof=1))
        r = np.array([charted(name, w) for w in resampled if name in w], float)
        if r.size > 1:
            sd = max(sd, float(r.std(ddof=1)))
        if name in SHARES:  # on the arcsine scale a binomial share's sd is 1 / (2 sqrt(n + 1/2))
            n = float(np.mean([w[f"n:{name}"] for w in per_window if name in w]))
            sd = max(sd, 0.5 / math.sqrt(n + 0.5))
        out[name] = Limits(float(v.mean()), sd if sd > 0 else max(1e-3 * abs(float(v.mean())), 1e-6), int(v.size))
    return out


def resampled_windows(rows: Sequence[Mapping[str, object]], size: int, stage1_threshold: float | None,
                      count: int = 400, seed: int = 0) -> list[dict[str, float]]:
    """``count`` windows of ``size`` rows drawn with replacement from ``rows`` (their statistics): what the
    rows alone imply for a window's spread (see :func:`baseline_limits`)."""
    rng = np.random.default_rng(seed)
    return [window_statistics([rows[i] for i in rng.integers(0, len(rows), size)], stage1_threshold)
            for _ in range(count)] if rows else []


def ewma_arl(limit: float, lam: float = LAMBDA, shift: float = 0.0, states: int = 101) -> float:
    """Average run length of a two-sided EWMA of N(shift, 1) with limits +- limit x its asymptotic sd
    (Brook and Evans' Markov chain, started at 0)."""
    from scipy.stats import norm

    h = limit * math.sqrt(lam / (2 - lam))
    width = 2 * h / states
    centres = -h + width * (np.arange(states) + 0.5)
    # from state i the next value is (1 - lam) c_i + lam x; it lands in state j when inside its cell
    lo = (centres[None, :] - width / 2 - (1 - lam) * centres[:, None]) / lam
    hi = (centres[None, :] + width / 2 - (1 - lam) * centres[:, None]) / lam
    q = norm.cdf(hi - shift) - norm.cdf(lo - shift)
    run = np.linalg.solve(np.eye(states) - q, np.ones(states))
    return float(run[states // 2])


@functools.lru_cache(maxsize=64)
def ewma_limit(arl: float, lam: float = LAMBDA) -> float:
    """L2 such that the EWMA's in-control average run length is ``arl`` batches (bisection)."""
    lo, hi = 0.5, 8.0
    for _ in range(24):  # to 5e-7 of L: far below what the baseline's estimation error moves
        mid = (lo + hi) / 2
        if ewma_arl(mid, lam) < arl:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class ChartPoint:
    """One statistic of one batch on its chart."""

    batch: str
    variant: str
    statistic: str
    value: float
    z: float  # the batch's standardised value
    ewma: float
    ewma_limit: float  # the EWMA's limit at this batch (its sd grows to the asymptote over the first batches)
    alarm: str  # "" | "ewma"

    def to_dict(self) -> JsonObject:
        return asdict(self)


def chart(batches: Sequence[tuple[str, Mapping[str, float]]], limits: Mapping[str, Limits], window: int,
          false_alarm_every: float = FALSE_ALARM_EVERY, variant: str = "", lam: float = LAMBDA) -> list[ChartPoint]:
    """The EWMA chart of every statistic the baseline has, over ``batches`` (name, its window statistics) in
    time order. The rate is shared by the charts of every statistic (see the module's text)."""
    names = [s for s in STATISTICS if s in limits]
    if not names:
        return []
    l2 = ewma_limit(len(names) * false_alarm_every / window, lam)
    out = []
    for name in names:
        lim = limits[name]
        # the baseline's mean is itself estimated from its m windows, off by about 1/sqrt(m) of a window's
        # spread, and that error does not average away: the EWMA sits on it for as long as the baseline is used.
        # The limit is moved out by the error's 95th percentile in size (1.645 / sqrt(m)), so that the rate
        # holds for 90% of baselines, not only on average over them
        est = GUARANTEE / math.sqrt(max(lim.windows, 1))
        e, t = 0.0, 0
        for batch, stats in batches:
            if name not in stats:
                continue
            t += 1
            z = (charted(name, stats) - lim.mean) / lim.sd
            e = lam * z + (1 - lam) * e
            bound = l2 * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * t))) + est
            out.append(ChartPoint(batch, variant, name, float(stats[name]), float(z), float(e), float(bound),
                                  "ewma" if abs(e) > bound else ""))
    return out


def rate_words(false_alarm_every: float, window: int, charts: int) -> str:
    """The stated rate, in the words every output carries."""
    return (f"control charts against the line's own baseline: at most one false alarm per {false_alarm_every:,.0f} "
            f"images of an unchanged line (set by --false-alarm-every), shared by {charts} EWMA chart(s) (one per "
            f"statistic, lambda {LAMBDA:g}) of batches of {window} images")

"""95% intervals of the two ranking metrics a reader reads first, AUROC and FPR@95, right at their edges.

A percentile bootstrap fails both exactly where the study's numbers sit:

- **AUROC near 1.** A perfectly separated sample resamples to 1.000 in every replicate, a zero-width
  interval (or none at all), and close to 1 the bootstrap's skew makes it cover a true 0.99 in 0.88
  of samples of 72 + 72. Here: at perfect separation the exact, distribution-free bound
  [alpha/2 ^ (1 / min(m, n)), 1] (P(complete separation) <= theta ^ min(m, n): pair each image of
  the smaller group with one of the other, independent pairs each ordered with probability theta);
  otherwise Newcombe's (2006, Part 2) score-type interval for the Mann-Whitney AUC, his method 5:
  the Hanley-McNeil variance with the exponential approximations Q1 = theta / (2 - theta),
  Q2 = 2 theta^2 / (1 + theta) and both group sizes replaced by their mean, evaluated at theta (not
  at the estimate) and inverted, so it stays inside [0, 1] and never has zero width.
- **FPR@95.** The threshold is the known scores' 95% order statistic, set by the same test knowns
  the rate is read on, so a Clopper-Pearson interval over the unknowns (the threshold taken as fixed)
  under-covers (0.78 at a true 0.20 on 72 + 72). Here: the stratified bootstrap gives the variance
  of the whole procedure (threshold and unknowns both resampled); Korn and Graubard's (1998)
  effective-sample-size Clopper-Pearson turns it into an exact-shaped interval: n_eff =
  p(1 - p) / variance (at most the unknowns' count), then the Clopper-Pearson limits of p * n_eff
  out of n_eff. It keeps the exact interval's shape at the edges (a rate of 0 still has an upper
  limit above 0) and widens it by the threshold's own noise.

Coverage of both, by simulation through these functions: ``python examples/interval_coverage.py``
(docs/results.md, "Intervals at their edges").
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
AUROC_METHOD = ("exact bound at perfect separation, else Newcombe's score interval for the Mann-Whitney AUC "
                "(method 5)")
FPR_METHOD = "Clopper-Pearson at the bootstrap's effective sample size (Korn-Graubard; threshold noise included)"


def mann_whitney_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(positive score > negative score) + half the ties: the AUROC with ``positive`` the positive class."""
    from scipy.stats import rankdata

    p, n = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    r = rankdata(np.r_[p, n])[: p.size]
    return float((r.sum() - p.size * (p.size + 1) / 2) / (p.size * n.size))


def _hanley_mcneil_variance(theta: float, m: int, n: int) -> float:
    """Newcombe's method-5 variance of the AUC at ``theta``: group sizes replaced by their mean."""
    n_star = (m + n) / 2
    return theta * (1 - theta) / (m * n) * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))


def auroc_interval(auc: float, n_positive: int, n_negative: int, level: float = LEVEL) -> list[float] | None:
    """The 95% interval of an AUROC over ``n_positive`` and ``n_negative`` independent images (see the
    module's text); None without images of both kinds or without a finite AUROC."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    m, n = int(n_positive), int(n_negative)
    if m < 1 or n < 1 or not math.isfinite(auc):
        return None
    alpha = 1 - level
    edge = (alpha / 2) ** (1 / min(m, n))
    if auc >= 1.0:
        return [float(edge), 1.0]
    if auc <= 0.0:
        return [0.0, float(1 - edge)]
    z2 = norm.ppf(1 - alpha / 2) ** 2

    def outside(theta: float) -> float:  # > 0 where theta lies outside the interval
        return (auc - theta) ** 2 - z2 * _hanley_mcneil_variance(theta, m, n)

    # outside() < 0 at the estimate and > 0 at 0 and 1 (variance 0 there), so each side has one root
    lo = brentq(outside, 0.0, auc, xtol=1e-12)
    hi = brentq(outside, auc, 1.0, xtol=1e-12)
    return [float(lo), float(hi)]


def fpr_threshold_rank(n_known: int, tpr_level: float = 0.95) -> int:
    """The 1-based rank of the known score that is the threshold: the first to accept ``tpr_level`` of them."""
    return int(np.searchsorted(np.arange(1, n_known + 1) / n_known, tpr_level, side="left")) + 1


def fpr_at_tpr_replicates(s_known: np.ndarray, s_unknown: np.ndarray, n_boot: int, seed: int = 0,
                          tpr_level: float = 0.95) -> np.ndarray:
    """FPR@``tpr_level`` over ``n_boot`` stratified bootstrap samples (knowns and unknowns each drawn
    with replacement within themselves), vectorised."""
    k, u = np.asarray(s_known, dtype=np.float64), np.sort(np.asarray(s_unknown, dtype=np.float64))
    rng = np.random.default_rng(seed)
    rank = fpr_threshold_rank(k.size, tpr_level)
    out = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # blocks bound the memory: 256 x n draws at a time
        b = min(256, n_boot - start)
        thr = np.sort(k[rng.integers(0, k.size, (b, k.size))], axis=1)[:, rank - 1]
        draws = u[rng.integers(0, u.size, (b, u.size))]
        out[start:start + b] = np.mean(draws <= thr[:, None], axis=1)
    return out


def effective_clopper_pearson(p: float, n: int, variance: float, level: float = LEVEL) -> list[float]:
    """Korn-Graubard: the Clopper-Pearson limits of ``p`` at the effective sample size p(1 - p) / variance
    (never above ``n``; ``n`` itself where p is 0 or 1 or the variance is 0)."""
    from scipy.stats import beta

    alpha = 1 - level
    n_eff = float(n)
    if 0 < p < 1 and variance > 0:
        n_eff = min(float(n), p * (1 - p) / variance)
    x = p * n_eff
    lo = 0.0 if x <= 0 else float(beta.ppf(alpha / 2, x, n_eff - x + 1))
    hi = 1.0 if x >= n_eff else float(beta.ppf(1 - alpha / 2, x + 1, n_eff - x))
    return [lo, hi]


def fpr_at_tpr_interval(s_known: np.ndarray, s_unknown: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        tpr_level: float = 0.95, level: float = LEVEL) -> list[float] | None:
    """The 95% interval of FPR@``tpr_level`` (scores: higher = more unknown; see the module's text);
    None without both kinds of images or without bootstrap replicates (``n_boot = 0``): the threshold's
    noise cannot be had otherwise, and an interval without it under-covers."""
    k, u = np.asarray(s_known, dtype=np.float64), np.asarray(s_unknown, dtype=np.float64)
    if not (k.size and u.size and n_boot > 0):
        return None
    thr = np.sort(k)[fpr_threshold_rank(k.size, tpr_level) - 1]
    p = float(np.mean(u <= thr))
    reps = fpr_at_tpr_replicates(k, u, n_boot, seed, tpr_level)
    return effective_clopper_pearson(p, u.size, float(np.var(reps, ddof=1)) if n_boot > 1 else 0.0, level)

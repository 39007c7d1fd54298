"""The complete design's estimand and its interval: the mean over every split of a data set, whose
uncertainty comes from training (seeds) and the test images the splits share, not from choosing splits
(issue 47). Pure statistics; :mod:`osd.verdict` reads it into the answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DesignInterval:
    """The complete design's mean and its interval (:func:`complete_design_interval`)."""

    mean: float
    ci95: tuple[float, float] | None
    df: int
    source: str  # "residual" (training and image noise the class effects leave) or "seeds" (seed means)
    splits: int
    seeds: int
    images: bool = False  # the shared test images' variance (a joint bootstrap) is in it


def joint_image_variance(per_image: Mapping[int, Mapping[str, Mapping[str, float]]], n_boot: int = 1000,
                         seed: int = 0) -> float:
    """The test images' share of the variance of the complete design's mean: a bootstrap over images that
    every split of a seed shares.

    ``per_image[seed][split][image]``: the image's paired difference (e.g. 1 when only the first
    approach is right, -1 when only the second is, 0 otherwise); a split's difference is their mean
    (open-set accuracy's difference). Each replicate weights every image of a seed by one Poisson(1)
    draw, the same in every split that tests it (a class's test images are shared by every split that
    knows or hides it), and takes the mean over splits of the weighted split means, then over seeds.
    Returns the replicates' variance (0 when nothing to resample)."""
    rng = np.random.default_rng(seed)
    per_seed = []
    for splits in per_image.values():
        images = sorted({i for d in splits.values() for i in d})
        if not images:
            continue
        col = {img: j for j, img in enumerate(images)}
        w = rng.poisson(1.0, size=(n_boot, len(images))).astype(float)
        means = []
        for d in splits.values():
            idx = np.array([col[i] for i in d])
            vals = np.array(list(d.values()), dtype=float)
            ws = w[:, idx]
            tot = ws.sum(1)
            means.append(np.where(tot > 0, (ws * vals).sum(1) / np.maximum(tot, 1e-12), vals.mean()))
        per_seed.append(np.mean(means, axis=0))
    if not per_seed:
        return 0.0
    return float(np.mean(per_seed, axis=0).var(ddof=1))


def complete_design_interval(values: Sequence[tuple[str, int, float]], hidden: Mapping[str, Sequence[str]],
                             level: float = 0.95, bounds: tuple[float, float] = (-1.0, 1.0),
                             image_variance: float | None = None) -> DesignInterval:
    """The mean over every split of a complete design, and its interval, from ``(split, seed, value)`` runs.

    The splits of a complete design (every way of hiding k classes) are the whole population of such
    splits of the data set, so the estimand is their mean and choosing splits adds no uncertainty;
    what does is training (seeds) and the test images. The splits are not independent (they share
    classes and, per seed, images), so their spread is not the noise: a split's value is modelled as
    a common mean plus one effect per hidden class (shared by every split that hides it) plus one
    effect per seed (shared by every split of that seed), and the noise is what that additive model
    leaves (least squares; df = runs - rank). The estimate is the mean of the split means (seeds
    averaged within their split); its variance is sigma^2 x sum(1 / seeds of a split) / splits^2. With
    two or more seeds, what the seeds' means vary by beyond that is a seed effect every split shares
    (its stage-1 fit, its image partition): its method-of-moments variance is added and the degrees of
    freedom follow Satterthwaite.

    The noise a seed's test images put into every split at once (a class's test images are the same
    in each split that knows it) looks like a class effect to that model and is not in sigma^2: with
    ``image_variance`` (:func:`joint_image_variance`, a bootstrap over the images the splits share)
    it is added to the variance. The part of the image noise that sigma^2 already holds is then
    counted twice: conservative, by that part.

    Coverage under class effects shared between splits, seed noise of today's size and effects
    shared within a seed: ``examples/design_coverage.py`` (docs/results.md)."""
    from scipy.stats import t

    runs = [(s, int(r), float(v)) for s, r, v in values if np.isfinite(v) and s in hidden]
    split_names = sorted({s for s, _, _ in runs})
    seeds = sorted({r for _, r, _ in runs})
    by_split = {s: [v for s2, _, v in runs if s2 == s] for s in split_names}
    mean = float(np.mean([np.mean(v) for v in by_split.values()])) if by_split else float("nan")
    classes = sorted({c for s in split_names for c in hidden[s]})
    if len(split_names) < 2:
        return DesignInterval(mean, None, 0, "residual", len(split_names), len(seeds))
    x = np.array([[float(c in hidden[s]) for c in classes] + [float(r == q) for q in seeds] for s, r, _ in runs])
    y = np.array([v for _, _, v in runs])
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    df = len(runs) - int(rank)
    if df < 1:
        return DesignInterval(mean, None, 0, "residual", len(split_names), len(seeds))
    sigma2 = float(((y - x @ coef) ** 2).sum()) / df
    var, source = sigma2 * sum(1 / len(v) for v in by_split.values()) / len(split_names) ** 2, "residual"
    images = bool(image_variance is not None and np.isfinite(image_variance))
    if images:
        var += float(image_variance)
    complete_seeds = [r for r in seeds if sum(r2 == r for _, r2, _ in runs) == len(split_names)]
    if len(complete_seeds) >= 2:
        # what the seeds' means vary by beyond the noise above: a seed effect every split shares (its stage-1
        # fit, its partition); its method-of-moments variance added, the degrees of freedom by Satterthwaite
        seed_means = np.array([np.mean([v for _, r2, v in runs if r2 == r]) for r in complete_seeds])
        extra = float(seed_means.var(ddof=1)) / len(complete_seeds) - var
        if extra > 0:
            resid = var - (float(image_variance) if images else 0.0)
            df_seeds = len(complete_seeds) - 1
            df = max(1, int((var + extra) ** 2 / (resid ** 2 / df + extra ** 2 / df_seeds)))
            var, source = var + extra, "seeds"
    half = float(t.ppf((1 + level) / 2, df) * np.sqrt(var))
    return DesignInterval(mean, (max(mean - half, bounds[0]), min(mean + half, bounds[1])), df, source,
                          len(split_names), len(seeds), images)


def design_interval_words(d: DesignInterval) -> str:
    """How the complete design's interval was made, for a reader."""
    how = (f"the noise is what one effect per hidden class{' and per seed' if d.seeds > 1 else ''} leaves "
           f"(df = {d.df})" if d.source == "residual" else
           f"the noise is what one effect per hidden class and per seed leaves, plus a seed effect every split "
           f"shares, from the spread of the {d.seeds} seeds' means (df = {d.df}, Satterthwaite)")
    shared = ("; plus the test images' noise, by a bootstrap over the images the splits share" if d.images else
              "; noise that every split of a seed shares through its test images is not in it (no per-image "
              "differences for this metric)")
    return (f"95% interval for the mean over all {d.splits} splits of the complete design (every way of hiding the "
            f"same number of classes: the whole population of such splits, so the interval reflects training and "
            f"test-image noise, not the choice of splits); {how}{shared}")

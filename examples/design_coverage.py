"""Coverage of the complete design's interval, by simulation through the study's own functions.

    python examples/design_coverage.py [--reps 1000] [--seed 0]

Each repetition draws one "world" like NEU's: 6 classes, the 15 ways of hiding 2, 60 test images per
known class and 60 per unknown class. A split's true difference (one-stage minus cascade) is a common
mean (+0.044, the real study's) plus one effect per hidden class (sd 0.05, shared by the 5 splits that
hide it), in some rows plus a non-additive effect of the pair; the estimand is the mean of the 15. A
run (split, seed) observes the mean over its test images of per-image differences: its true value,
training noise of the run, and each test image's own deviation. A seed draws its test images once,
so an image's deviation is the same in every split that tests it (a class's test images are shared
by every split that knows or hides it): that is the noise the splits do not average away. The run
noise in all is today's (sd 0.048, the real study's pooled within-split seed sd); ``share`` is the
part of its variance that the shared images carry (0.12 is about what a paired bootstrap over 360
images gives on the real runs; 0.5 is pessimistic).

The interval is ``osd.verdict.complete_design_interval`` with the images' variance from
``osd.verdict.joint_image_variance`` (a bootstrap over the shared images, as the report computes it
from the prediction rows); the same interval without the images' term, and the naive t over the 15
split means (df 14), are shown beside it.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from osd.verdict import complete_design_interval, joint_image_variance, t_interval

CLASSES = ("cr", "in", "pa", "ps", "rs", "sc")
HIDDEN = {"-".join(h): h for h in itertools.combinations(CLASSES, 2)}
RUN_SD = 0.048
PER_CLASS = 60
N_TEST = 6 * PER_CLASS  # 4 known classes' test images + 2 unknown classes' (balanced)

# (name, share of the run variance carried by the shared test images, pair-interaction sd, seed-effect sd)
MODELS = (
    ("training noise only", 0.0, 0.0, 0.0),
    ("+ shared images, 12% of the run variance", 0.12, 0.0, 0.0),
    ("+ shared images, 50%", 0.5, 0.0, 0.0),
    ("+ shared images 12%, pair interactions sd 0.02", 0.12, 0.02, 0.0),
    ("+ shared images 12%, a seed effect sd 0.01", 0.12, 0.0, 0.01),
)


def world(rng: np.random.Generator, pair_sd: float) -> dict[str, float]:
    effect = dict(zip(CLASSES, rng.normal(0.0, 0.05, len(CLASSES))))
    return {s: 0.044 + effect[a] + effect[b] + rng.normal(0.0, pair_sd) for s, (a, b) in HIDDEN.items()}


def one_seed(rng: np.random.Generator, truth: dict[str, float], r: int, share: float, seed_sd: float = 0.0
             ) -> tuple[list[tuple[str, int, float]], dict[str, dict[str, float]]]:
    """One seed's runs and their per-image differences (``seed_sd``: an effect every split of the seed
    shares, as its stage-1 fit would be)."""
    image_sd = RUN_SD * np.sqrt(share * N_TEST)  # so the mean over a run's images has variance share x RUN_SD^2
    train_sd = RUN_SD * np.sqrt(1 - share)
    # each class's test images of this seed, as a known class and as an unknown one
    pools = {(c, role): {f"{c}-{role}-{r}-{i}": float(v) for i, v in enumerate(rng.normal(0, image_sd, PER_CLASS))}
             for c in CLASSES for role in ("known", "unknown")}
    runs, per_image = [], {}
    g = rng.normal(0, seed_sd) if seed_sd else 0.0
    for s, hidden in HIDDEN.items():
        shift = truth[s] + g + rng.normal(0, train_sd)
        images = {k: shift + v for c in CLASSES for k, v in pools[(c, "unknown" if c in hidden else "known")].items()}
        per_image[s] = images
        runs.append((s, r, float(np.mean(list(images.values())))))
    return runs, per_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=200, help="bootstrap replicates of the images' variance")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"{'model':48s} {'seeds':>5s} {'coverage':>9s} {'no images':>10s} {'naive t':>8s} {'half-width':>11s} "
          f"{'lower > 0':>9s}")
    for name, share, pair_sd, seed_sd in MODELS:
        for seeds in (1, 3):
            rng = np.random.default_rng([a.seed, seeds, int(share * 100), int(pair_sd * 1000), int(seed_sd * 1000)])
            hit = bare = naive = above = 0
            widths = []
            for _ in range(a.reps):
                truth = world(rng, pair_sd)
                target = float(np.mean(list(truth.values())))
                runs, per_image = [], {}
                for r in range(seeds):
                    got, images = one_seed(rng, truth, r, share, seed_sd)
                    runs += got
                    per_image[r] = images
                var = joint_image_variance(per_image, a.boot, seed=int(rng.integers(1 << 31)))
                lo, hi = complete_design_interval(runs, HIDDEN, image_variance=var).ci95
                hit += lo <= target <= hi
                above += lo > 0
                widths.append((hi - lo) / 2)
                blo, bhi = complete_design_interval(runs, HIDDEN).ci95
                bare += blo <= target <= bhi
                nlo, nhi = t_interval([np.mean([v for s2, _, v in runs if s2 == s]) for s in HIDDEN])
                naive += nlo <= target <= nhi
            n = a.reps
            print(f"{name:48s} {seeds:5d} {hit / n:9.3f} {bare / n:10.3f} {naive / n:8.3f} {np.mean(widths):11.3f} "
                  f"{above / n:9.3f}", flush=True)


if __name__ == "__main__":
    main()

"""Coverage of the complete design's interval, by simulation through the study's own function.

    python examples/design_coverage.py [--reps 2000] [--seed 0]

Each repetition draws one "world": NEU-like, 6 classes, the 15 ways of hiding 2. A split's true
difference is a common mean (+0.044, the real study's) plus one effect per hidden class (sd 0.05,
shared by the 5 splits that hide it) plus, in some rows, a non-additive effect of the pair. The
estimand is the mean of the 15 true differences. Each (split, seed) run adds noise of today's size
(sd 0.048 in all, the pooled within-split seed sd of the real study), split between noise of the
run alone and noise shared within a seed: per class and seed (its test images, seen by every split
that knows or hides the class) and per seed (its partition, its stage-1 fit). The interval is
``osd.verdict.complete_design_interval``; the naive t over 15 split means (df 14) is shown beside it.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from osd.verdict import complete_design_interval, t_interval

CLASSES = ("cr", "in", "pa", "ps", "rs", "sc")
HIDDEN = {"-".join(h): h for h in itertools.combinations(CLASSES, 2)}
RUN_SD = 0.048  # today's within-split seed sd (issue 47: pooled variance 0.0023)

# (name, share of the run variance shared per class and seed, seed-shared sd, pair-interaction sd)
MODELS = (
    ("independent run noise", 0.0, 0.0, 0.0),
    ("+ pair interactions sd 0.02", 0.0, 0.0, 0.02),
    ("half the noise shared per class x seed", 0.5, 0.0, 0.0),
    ("half per class x seed, + seed effect sd 0.01", 0.5, 0.01, 0.0),
)


def world(rng: np.random.Generator, pair_sd: float) -> dict[str, float]:
    effect = dict(zip(CLASSES, rng.normal(0.0, 0.05, len(CLASSES))))
    return {s: 0.044 + effect[a] + effect[b] + rng.normal(0.0, pair_sd) for s, (a, b) in HIDDEN.items()}


def runs(rng: np.random.Generator, truth: dict[str, float], seeds: int, shared: float, seed_sd: float
         ) -> list[tuple[str, int, float]]:
    own_sd = RUN_SD * np.sqrt(1 - shared)
    # a split's class x seed noise: 4 known-class terms and 2 hidden-class terms, each of variance shared / 6
    term_sd = RUN_SD * np.sqrt(shared / 6)
    out = []
    for r in range(seeds):
        known_part = dict(zip(CLASSES, rng.normal(0, term_sd, len(CLASSES))))
        hidden_part = dict(zip(CLASSES, rng.normal(0, term_sd, len(CLASSES))))
        g = rng.normal(0, seed_sd)
        for s, h in HIDDEN.items():
            noise = sum(hidden_part[c] if c in h else known_part[c] for c in CLASSES)
            out.append((s, r, truth[s] + g + noise + rng.normal(0, own_sd)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{'model':48s} {'seeds':>5s} {'coverage':>9s} {'naive t':>8s} {'mean half-width':>16s} {'power':>6s}")
    for name, shared, seed_sd, pair_sd in MODELS:
        for seeds in (1, 2, 3):
            rng = np.random.default_rng([args.seed, seeds, int(shared * 10), int(seed_sd * 1000), int(pair_sd * 1000)])
            hit = naive = power = 0
            widths = []
            for _ in range(args.reps):
                truth = world(rng, pair_sd)
                target = float(np.mean(list(truth.values())))
                got = runs(rng, truth, seeds, shared, seed_sd)
                d = complete_design_interval(got, HIDDEN)
                lo, hi = d.ci95
                hit += lo <= target <= hi
                power += lo > 0
                widths.append((hi - lo) / 2)
                means = [np.mean([v for s2, _, v in got if s2 == s]) for s in HIDDEN]
                nlo, nhi = t_interval(means)
                naive += nlo <= target <= nhi
            print(f"{name:48s} {seeds:5d} {hit / args.reps:9.3f} {naive / args.reps:8.3f} "
                  f"{np.mean(widths):16.3f} {power / args.reps:6.3f}")


if __name__ == "__main__":
    main()

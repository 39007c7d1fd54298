"""Coverage of the intervals at their edges, by simulation through the project's own functions (issue 48).

    python examples/interval_coverage.py [--reps 1000] [--boot 1000] [--old-reps 300] [--seed 0]

Three families, each against the interval it replaced, at a nominal 95%:

- **FPR@95** (``osd.metrics.metric_intervals`` -> ``osd.ranking_intervals.fpr_at_tpr_interval``):
  binormal scores, knowns N(0, 1), unknowns N(mu, 1) with mu set so that the true FPR at the knowns'
  95% quantile is 0.07 or 0.20, on 72 knowns / 72 unknowns and 240 / 120. Beside it, the
  fixed-threshold Clopper-Pearson count it replaced (the same test knowns set the threshold).
- **AUROC** (``osd.ranking_intervals.auroc_interval``, what ``metric_intervals``, the detection study, the
  three-outcome stage-1 AUROC and the in-domain test call): binormal, equal variance, true AUROC 0.95,
  0.99, 0.999, on 72 + 72 and 150 + 150. Beside it, the stratified percentile bootstrap it replaced
  (``osd.metrics.bootstrap``; a zero-width interval dropped by ``without_degenerate``, as it was:
  "shown" counts the samples that had one).
- **The cascade's normal pass rate over 2 seeds x 3 splits** (``osd.report.answer.interval_over_runs``):
  each seed fits its own threshold, the ``patchcore.acceptance`` (0.95) order statistic of n calibration
  normals (``osd.osr.thresholds.AcceptanceThreshold``), so its true pass rate p_s = F(t_s) differs by
  seed; it passes k_s ~ Binomial(n, p_s) of its n test normals (n calibration normals too), the same in
  each of its 3 splits. The interval is for the procedure's expected pass rate k / (n + 1) (what the report
  says it is for), scored also against the mean of the two fits' own rates; beside it, the t interval over
  the 3 split means that treated the splits as replicates, scored against both.

- **The calibration check** (``osd.calibration_check.predictive_check``): calibration and held-out good
  parts drawn from one population; the share of samples whose count falls inside the predictive
  interval (the check's own coverage: 1 minus its false-alarm rate).

- **The non-inferiority rule's power** (``osd.verdict.non_inferiority``) at a true difference of 0, seed sd
  0.05 (the hardest setting's), margin 0.01: how often it can pass at all.

Exact 95% intervals (Clopper-Pearson) of each coverage are printed beside it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import norm

from osd.calibration_check import predictive_check
from osd.metrics import EncodedResults, bootstrap, without_degenerate
from osd.osr.thresholds import AcceptanceThreshold
from osd.proportion import clopper_pearson
from osd.ranking_intervals import auroc_interval, mann_whitney_auc
from osd.report.answer import interval_over_runs
from osd.verdict import split_level_interval


def cov(hits: int, n: int) -> str:
    lo, hi = clopper_pearson(hits, n)
    return f"{hits / n:.3f} [{lo:.3f}, {hi:.3f}]"


def fpr_cells(reps: int, boot: int, seed: int) -> list[str]:
    out = []
    for true in (0.07, 0.20):
        mu = norm.ppf(0.95) - norm.ppf(true)
        for nk, nu in ((72, 72), (240, 120)):
            rng = np.random.default_rng(seed)
            new = old = 0
            width = []
            classes = ["a", "b"]
            labels = ["a", "b"] * (nk // 2) + ["x"] * nu
            unk = np.r_[np.zeros(nk, bool), np.ones(nu, bool)]
            for r in range(reps):
                k, u = rng.normal(0, 1, nk), rng.normal(mu, 1, nu)
                s = np.r_[k, u]
                pred = np.where(unk, "unknown", np.array(labels, dtype=object))
                # the project's own entry point; only FPR@95 read (the other metrics' bootstrap skipped: keys)
                ci = _fpr_only(labels, pred, s, unk, classes, boot, r)
                new += ci[0] <= true <= ci[1]
                width.append(ci[1] - ci[0])
                thr = np.sort(k)[int(np.ceil(0.95 * nk)) - 1]
                lo, hi = clopper_pearson(int(np.sum(u <= thr)), nu)
                old += lo <= true <= hi
            out.append(f"| FPR@95 | {true:g} | {nk} / {nu} | {cov(new, reps)} | {np.mean(width):.3f} | "
                       f"{cov(old, reps)} (fixed-threshold Clopper-Pearson) |")
    return out


def _fpr_only(labels, pred, s, unk, classes, boot, r):  # noqa: ANN001, ANN202 - the sim's own shorthand
    enc = EncodedResults(labels, pred, pred, s, unk, classes)
    return enc.edge_intervals(boot, r)["fpr_at_95_tpr"]


def auroc_cells(reps: int, old_reps: int, boot: int, seed: int) -> list[str]:
    out = []
    for true in (0.95, 0.99, 0.999):
        mu = np.sqrt(2) * norm.ppf(true)
        for m in (72, 150):
            rng = np.random.default_rng(seed)
            new = shown = 0
            width = []
            for _ in range(reps):
                p, n = rng.normal(mu, 1, m), rng.normal(0, 1, m)
                ci = auroc_interval(mann_whitney_auc(p, n), m, m)
                shown += ci is not None and ci[1] > ci[0]
                new += ci is not None and ci[0] <= true <= ci[1]
                width.append(ci[1] - ci[0])
            rng = np.random.default_rng(seed)
            old = old_shown = 0
            y = np.r_[np.zeros(m, bool), np.ones(m, bool)]
            for _ in range(old_reps):
                p, n = rng.normal(mu, 1, m), rng.normal(0, 1, m)
                s = np.r_[n, p]
                ci = without_degenerate(bootstrap(lambda idx, s=s, y=y: {"auroc": EncodedResults._auroc(y[idx], s[idx])},
                                                  y, boot, 0)).get("auroc")
                old_shown += ci is not None
                old += ci is not None and ci[0] <= true <= ci[1]
            out.append(f"| AUROC | {true:g} | {m} + {m} | {cov(new, reps)}, shown {shown}/{reps} | {np.mean(width):.3f} | "
                       f"{cov(old, old_reps)}, shown {old_shown}/{old_reps} (percentile bootstrap) |")
    return out


def pass_rate_cells(reps: int, seed: int) -> list[str]:
    out = []
    for n in (18, 60, 200):
        rng = np.random.default_rng(seed)
        new = new_uncond = old_cond = old_uncond = 0
        width = []
        # E F(t) = k / (n + 1) at the k-th order statistic of n calibration normals (k: the threshold's own rank)
        k_rank = int(AcceptanceThreshold(0.95, quiet=True).fit(np.arange(n, dtype=float)).threshold_) + 1
        expected = k_rank / (n + 1)
        for _ in range(reps):
            vals, p_true = [], []
            for s in (0, 1):
                cal = rng.random(n)  # scores of good parts: uniform (only the ranks matter)
                t = AcceptanceThreshold(0.95, quiet=True).fit(cal).threshold_
                p_s = t  # F(t) for uniform scores
                k = int(rng.binomial(n, p_s))
                p_true.append(p_s)
                for split in ("a", "b", "c"):
                    vals.append((split, s, k / n, list(clopper_pearson(k, n)), n, n))
            target = float(np.mean(p_true))
            _, ci, how = interval_over_runs(vals, metric="normal_pass_rate")
            assert "over fits" in how, how
            new += ci[0] <= target <= ci[1]
            new_uncond += ci[0] <= expected <= ci[1]
            width.append(ci[1] - ci[0])
            by_split: dict[str, list[float]] = {}
            for split, _, v, *_ in vals:
                by_split.setdefault(split, []).append(v)
            _, old = split_level_interval(by_split, bounds=(0.0, 1.0))
            old_cond += old is not None and old[0] <= target <= old[1]
            old_uncond += old is not None and old[0] <= expected <= old[1]
        out.append(f"| normal pass rate, 2 seeds x 3 splits | {expected:.3f} expected | {n} a seed | "
                   f"{cov(new_uncond, reps)} (the expected; {cov(new, reps)} these fits) | {np.mean(width):.3f} | "
                   f"{cov(old_cond, reps)} (these fits), "
                   f"{cov(old_uncond, reps)} (expected) (t over 3 split means) |")
    return out


def predictive_cells(reps: int, seed: int) -> list[str]:
    """The calibration's predictive interval of a held-out pass count (osd.calibration_check), when the
    calibration and test parts are exchangeable: how often the check says they are not (nominal <= 0.05)."""
    out = []
    for n, m in ((60, 60), (196, 196), (500, 200)):
        rng = np.random.default_rng(seed)
        false = 0
        for _ in range(reps):
            thr = AcceptanceThreshold(0.95, quiet=True).fit(rng.random(n))
            c = predictive_check(int(np.sum(rng.random(m) <= thr.threshold_)), m, thr.rank_, n)
            false += not c.agrees
        out.append(f"| calibration check (predictive interval of the held-out pass count) | exchangeable | "
                   f"{n} calibration / {m} held out | {cov(reps - false, reps)} | - | - |")
    return out


def noninferiority_power(reps: int, seed: int) -> list[str]:
    """How often the project's non-inferiority rule (osd.verdict.non_inferiority, margin 0.01) passes when
    the truth is no difference at all, with the hardest setting's seed sd (0.05), reference mean 0.95."""
    from osd.verdict import non_inferiority

    out = []
    for splits, seeds in ((3, 3), (3, 10), (15, 3)):
        rng = np.random.default_rng(seed)
        passed = 0
        for _ in range(reps):
            diffs = {f"s{i}": list(rng.normal(0.0, 0.05, seeds)) for i in range(splits)}
            passed += non_inferiority(diffs, [0.95] * (splits * seeds), 0.01).verdict == "non-inferior"
        out.append(f"| non-inferiority rule passes at a true difference of 0 (power) | 0 | {splits} splits x "
                   f"{seeds} seeds | {cov(passed, reps)} | - | - |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--old-reps", type=int, default=300, help="repetitions of the old AUROC bootstrap (slow)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    print("| metric | true | images | coverage now [exact 95%] | mean width | before |")
    print("|---|---|---|---|---|---|")
    for line in (fpr_cells(a.reps, a.boot, a.seed) + auroc_cells(a.reps, a.old_reps, a.boot, a.seed)
                 + pass_rate_cells(a.reps, a.seed) + predictive_cells(a.reps, a.seed)
                 + noninferiority_power(a.reps, a.seed)):
        print(line, flush=True)
    print(f"\n{a.reps} repetitions a cell ({a.old_reps} for the old AUROC bootstrap), B = {a.boot}; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""Which training regimen may replace full fine-tuning? Validation signals only, never a test score.

    python examples/regimen_validation.py PROJECT_DIR [--regimens 0,1,2,3] [--splits cr-sc,in-ps,pa-rs]
        [--seeds 0] [--margin 0.01] [--set KEY=VALUE ...] [--json OUT]

For every split and seed, each regimen (``classifier.train_blocks``: N = the last N blocks and the
head trained on the shared frozen prefix; -1 = full fine-tuning, the default and the reference) is
trained and validated by ``osd validate`` (:mod:`osd.pipeline.validation`):

- closed-set accuracy on the threshold images (known validation images no choice has seen);
- the leave-one-known-class-out AUROC of the one-stage score (a classifier retrained without each
  known class, that class's threshold images scored as unknown against the others'), the signal a
  frozen network cannot fake the way it fakes closed-set accuracy.

The reference lives in the project's own outputs (the classifiers ``osd run-all`` trained are reused);
each regimen in ``<output_dir>/regimen_<N>``. A regimen replaces the reference only where it is
non-inferior on both signals by the project's rule (:func:`osd.verdict.non_inferiority`: one-sided
95% bound of the paired difference above -margin, the reference not at its ceiling). The script
reports and decides; it never changes ``osd.toml``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from osd import config
from osd.pipeline.job import Job
from osd.pipeline.validation import validate
from osd.verdict import non_inferiority

SIGNALS = ("closed_set_accuracy", "loko_auroc")


def signals(cfg: config.Config, split: str) -> dict[str, float]:
    t = time.perf_counter()
    r = validate(Job.of(cfg), split)
    return {"closed_set_accuracy": r.closed_set_accuracy, "loko_auroc": r.loko_mean,
            "loko_by_class": r.loko_auroc, "seconds": time.perf_counter() - t, "cached": r.cached}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--regimens", default="0,1,2,3")
    ap.add_argument("--splits", default="")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--no-reference", action="store_true", help="the regimens alone (the reference's cost: one full "
                    "training per known class and split)")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    base = config.load(a.project).replace(**dict(config.parse_override(o) for o in a.overrides))
    splits = [s for s in a.splits.split(",") if s] or base.split_names()
    seeds = [int(s) for s in a.seeds.split(",") if s] or base.study_seeds()
    regimens = ([] if a.no_reference else [-1]) + [int(n) for n in a.regimens.split(",") if n]
    runs = []
    for seed in seeds:
        for split in splits:
            for n in regimens:
                out = {} if n < 0 else {"project.output_dir": str(Path(base.project.output_dir, f"regimen_{n}"))}
                cfg = base.replace(**{"classifier.train_blocks": n, **out}).for_seed(seed)
                run = {"split": split, "seed": seed, "regimen": n, **signals(cfg, split)}
                runs.append(run)
                print(json.dumps(run), flush=True)
    verdict = decide(runs, a.margin)
    for n, per in verdict.items():
        for m, v in per.items():
            print(f"regimen {n}: {m} minus full fine-tuning {v['mean_difference']:+.4f}, one-sided 95% lower bound "
                  f"{v['lower']:+.4f} against -{a.margin} (reference mean {v['reference_mean']:.4f}): {v['verdict']}")
    if a.json:
        a.json.write_text(json.dumps({"runs": runs, "verdict": verdict, "overrides": a.overrides}, indent=2))


def decide(runs: list[dict], margin: float) -> dict[int, dict[str, dict]]:
    """Per regimen and signal: the project's non-inferiority rule against full fine-tuning (-1)."""
    ref = {(r["split"], r["seed"]): r for r in runs if r["regimen"] == -1}
    out: dict[int, dict[str, dict]] = {}
    for n in sorted({r["regimen"] for r in runs if r["regimen"] >= 0}):
        mine = [r for r in runs if r["regimen"] == n and (r["split"], r["seed"]) in ref]
        out[n] = {}
        for m in SIGNALS:
            by_split: dict[str, list[float]] = {}
            for r in mine:
                by_split.setdefault(r["split"], []).append(r[m] - ref[(r["split"], r["seed"])][m])
            if not by_split:
                continue
            v = non_inferiority(by_split, [ref[(r["split"], r["seed"])][m] for r in mine], margin)
            out[n][m] = {"mean_difference": v.mean_difference, "lower": v.lower, "reference_mean": v.reference_mean,
                         "verdict": v.verdict}
    return out


if __name__ == "__main__":
    main()

"""A simulated line for ``osd monitor``: false alarms per 10,000 images and detection delays (issue 49).

    python examples/bench_monitor_line.py PROJECT [--split cr-sc] [--pools 3] [--sizes 25,50,100]
        [--streams 20] [--reps 40] [--baseline-images 2000] [--set KEY=VALUE ...] [--json OUT]

The line is built from the real data's images, through the project's own ``Predictor`` (every image
predicted once per condition) and the monitor's own functions:

- the split's **known test images** in a steady mix, a steady 3% of its **first unknown class**, and two
  **part variants in runs of 100 images** (variant A: as photographed; variant B: contrast +15%, a
  harmless difference the line makes every day): production in lots;
- the images are cut into ``--pools`` pools that **share no image** (each class's images dealt out in
  turn); each pool is its own line;
- **Phase I**: a baseline from the first ``--baseline-images`` (2,000) images of the line
  (:func:`osd.pipeline.baseline.make_baseline`, one variant column, windows of the batch size);
- **stationary**: ``--streams`` stretches of 10,000 images each, the same line: the false alarms
  counted per 10,000 images, with an exact Poisson 95% interval, for the charts at the default rate (one
  per 10,000 images) and for the per-batch rule without a baseline (``check_batch`` against the study's
  reference; a batch reading ``drift`` is an alarm), side by side;
- **one change each**, starting right after 1,000 images of the stationary line: brightness -20%, a
  Gaussian blur of radius 2, and the split's **second unknown class** rising from 0% to 5% of the
  flagged images: the images until the first alarm (median, and the share found within 500 images with
  its exact interval) over ``--reps`` repetitions, for both rules.

Stage 1 is charted where the project's PatchCore scores images whole (a detection study, or normal
images of the image unit); on the real data (Severstal strips scored per crop) the one-stage
statistics alone are charted, and the tables say so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import ImageEnhance, ImageFilter

import osd
from osd.control_chart import chart, window_statistics
from osd.monitor import DRIFT, batch_status, check_batch
from osd.pipeline.baseline import make_baseline, variant_of
from osd.proportion import clopper_pearson

CONDITIONS = {
    "A": lambda im: im,
    "B": lambda im: ImageEnhance.Contrast(im).enhance(1.15),
    "brightness -20%": lambda im: ImageEnhance.Brightness(im).enhance(0.8),
    "blur (radius 2)": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
}
RUN = 100  # images of one variant in a row


def poisson_interval(k: int, exposure: float) -> tuple[float, float]:
    """Exact 95% interval of a Poisson rate: k events over ``exposure`` units."""
    from scipy.stats import chi2

    lo = chi2.ppf(0.025, 2 * k) / 2 if k else 0.0
    return lo / exposure, chi2.ppf(0.975, 2 * k + 2) / 2 / exposure


def line(rows: dict[str, list[dict]], unknown: list[dict], new: list[dict], n: int, rng, change: str | None = None,
         start: int = 0, new_share: float = 0.0, steady_unknown: float = 0.03) -> list[dict]:
    """``n`` images of the line, variants in runs; from image ``start`` on, ``change`` applies (a condition's
    rows), or the new unknown class makes ``new_share`` of the images."""
    out = []
    for i in range(n):
        variant = "AB"[(i // RUN) % 2]
        cond = change if change in CONDITIONS and i >= start else variant
        u = rng.random()
        if i >= start and new_share and u < new_share:
            r = new[rng.integers(len(new))]
        elif u > 1 - steady_unknown:
            r = unknown[rng.integers(len(unknown))]
        else:
            r = rows[cond][rng.integers(len(rows[cond]))]
        out.append({**r, "variant": variant})
    return out


BY_STATISTIC: dict[str, int] = {}  # false alarms of the stationary stretches, by statistic and chart


def chart_alarms(stream: list[dict], baseline, window: int, threshold, tally: bool = False) -> list[int]:
    """The image index at which each window with an alarm ends (the charts at the default rate)."""
    alarms = []
    for variant in baseline.limits:
        idx = [i for i, r in enumerate(stream) if variant_of(r, "variant") == variant]
        named = []
        for k in range(0, len(idx), window):
            part = idx[k:k + window]
            if len(part) == window:
                named.append((str(part[-1]), window_statistics([stream[i] for i in part], threshold)))
        points = [p for p in chart(named, baseline.limits[variant], window, variant=variant) if p.alarm]
        if tally:
            for p in points:
                key = f"{p.statistic}:{p.alarm}"
                BY_STATISTIC[key] = BY_STATISTIC.get(key, 0) + 1
        alarms += sorted({int(p.batch) for p in points})
    return sorted(alarms)


def batch_alarms(stream: list[dict], ref, window: int) -> list[int]:
    """Today's rule: each window of consecutive images against the study's reference; drift is an alarm."""
    return [k + window - 1 for k in range(0, len(stream) - window + 1, window)
            if batch_status(check_batch("b", stream[k:k + window], ref)) == DRIFT]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--split", default="")
    ap.add_argument("--pools", type=int, default=3)
    ap.add_argument("--sizes", default="25,50,100")
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--baseline-images", type=int, default=2000, help="the first stretch the baseline is made from")
    ap.add_argument("--set", action="append", default=[], dest="settings")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from osd.data.images import load_rgb
    from osd.pipeline.monitor import project_reference

    project = osd.Project(a.project, a.settings)
    job = project.job
    split = a.split or job.cfg.split_names[0]
    ref = project_reference(job, split)
    stage = "both" if ref.stage1_normal is not None else "one-stage"
    predictor = project.predictor(split, stage)
    test = job.manifest(split).test()
    known = [e for e in test if e.role == "known"]
    unknown_classes = sorted({e.label for e in test if e.role == "unknown"})
    steady_cls, new_cls = unknown_classes[0], unknown_classes[-1]
    sizes = [int(s) for s in a.sizes.split(",")]
    rng = np.random.default_rng(0)
    print(f"split {split}: {len(known)} known test images, unknown {steady_cls} (steady 3%) and {new_cls} (the new "
          f"one); stage 1 {'charted' if stage == 'both' else 'not charted (its reference is per crop)'}", flush=True)

    def predicted(entries, cond: str) -> list[dict]:
        return [dict(r) for r in predictor.predict([CONDITIONS[cond](load_rgb(e.path)) for e in entries])]

    # pools that share no image: each class's images dealt out in turn
    def deal(entries):
        by = {}
        for e in entries:
            by.setdefault(e.label, []).append(e)
        pools = [[] for _ in range(a.pools)]
        for items in by.values():
            for i, e in enumerate(items):
                pools[i % a.pools].append(e)
        return pools

    known_pools, steady_pools = deal(known), deal([e for e in test if e.label == steady_cls])
    new_pools = deal([e for e in test if e.label == new_cls])
    result: dict = {"split": split, "stage1_charted": stage == "both", "pools": []}
    for p in range(a.pools):
        rows = {cond: predicted(known_pools[p], cond) for cond in CONDITIONS}
        steady, new = predicted(steady_pools[p], "A"), predicted(new_pools[p], "A")
        pool: dict = {"known_images": len(known_pools[p]), "sizes": {}}
        for w in sizes:
            base_rows = line(rows, steady, new, a.baseline_images, rng)
            baseline = make_baseline(base_rows, ref, w, "variant", ["simulated"])
            BY_STATISTIC.clear()
            fa_chart = fa_batch = 0
            for _ in range(a.streams):
                s = line(rows, steady, new, 10_000, rng)
                fa_chart += len(chart_alarms(s, baseline, w, ref.stage1_threshold, tally=True))
                fa_batch += len(batch_alarms(s, ref, w))
            exposure = a.streams  # units of 10,000 images
            cell = {"false_alarms_per_10k": {
                "charts": [fa_chart / exposure, *poisson_interval(fa_chart, exposure)],
                "per_batch": [fa_batch / exposure, *poisson_interval(fa_batch, exposure)]}, "delay": {}}
            for change in ("brightness -20%", "blur (radius 2)", "new unknown 0% -> 5%"):
                d_chart, d_batch = [], []
                for _ in range(a.reps):
                    s = line(rows, steady, new, 3000, rng, change if change in CONDITIONS else None, start=1000,
                             new_share=0.05 if change.startswith("new") else 0.0)
                    for rule, got in ((d_chart, chart_alarms(s, baseline, w, ref.stage1_threshold)),
                                      (d_batch, batch_alarms(s, ref, w))):
                        after = [i for i in got if i >= 1000]
                        rule.append(after[0] - 999 if after else None)

                def summary(delays: list) -> dict:
                    found = [d for d in delays if d is not None]
                    within = sum(d <= 500 for d in found)
                    return {"median": float(np.median(found)) if found else None, "found": len(found),
                            "within_500": [within / len(delays), *clopper_pearson(within, len(delays))]}

                cell["delay"][change] = {"charts": summary(d_chart), "per_batch": summary(d_batch)}
            cell["false_alarms_by_chart"] = dict(BY_STATISTIC)
            pool["sizes"][w] = cell
            fa = cell["false_alarms_per_10k"]
            print(f"pool {p + 1} batch {w:>3}: false alarms / 10k images: charts {fa['charts'][0]:.2f} "
                  f"[{fa['charts'][1]:.2f}, {fa['charts'][2]:.2f}], per-batch rule {fa['per_batch'][0]:.2f} "
                  f"[{fa['per_batch'][1]:.2f}, {fa['per_batch'][2]:.2f}]; " + "; ".join(
                      f"{c}: within 500 images charts {v['charts']['within_500'][0]:.2f} (median "
                      f"{v['charts']['median']}), per-batch {v['per_batch']['within_500'][0]:.2f}"
                      for c, v in cell["delay"].items()) + f"; false alarms by chart {dict(BY_STATISTIC)}", flush=True)
        result["pools"].append(pool)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

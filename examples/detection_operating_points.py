"""Operating points on held-out data: does the pass rate a threshold promises hold on new good parts?

    python examples/detection_operating_points.py --out ../runs/op_points [--good 2000] [--bad 60]

Draws a synthetic line (good parts: textured noise with a slow brightness drift; bad parts: the same
with a dark blotch of random size and place), makes a detection project with ``osd init --neu BAD
--normal GOOD`` and runs ``osd run-all`` with a small random-weight backbone (the check is about the
thresholds, not about the features). For each operating point set on the calibration images it
prints the threshold, the calibration's Clopper-Pearson 95% acceptance interval and the pass rate on
the held-out test normals, and whether the latter lands inside the former.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SETTINGS = ["patchcore.backbone=resnet18", "patchcore.weights=none", "patchcore.image_size=64",
            "normal.crop_size=64", "normal.crop_stride=64", "stats.bootstrap=200"]


def draw(root: Path, good: int, bad: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    g, b = root / "good", root / "bad" / "blotch"
    g.mkdir(parents=True, exist_ok=True)
    b.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(good + bad):
        a = rng.normal(120, 12, (64, 64)) + rng.normal(0, 8) * (xx / 64.0)
        if i >= good:
            r, cy, cx = rng.uniform(4, 12), rng.uniform(12, 52), rng.uniform(12, 52)
            a[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] -= rng.uniform(30, 70)
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save((g if i < good else b) / f"{i:05d}.png")
    return g, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--good", type=int, default=2000)
    ap.add_argument("--bad", type=int, default=60)
    args = ap.parse_args()
    good, bad = draw(args.out / "data", args.good, args.bad)
    project = args.out / "project"
    osd = [sys.executable, "-m", "osd"]
    subprocess.run([*osd, "init", str(project), "--neu", str(bad), "--normal", str(good), "--force"], check=True)
    sets = [x for s in SETTINGS for x in ("--set", s)]
    subprocess.run([*osd, "run-all", "-p", str(project), *sets], check=True, stdout=subprocess.DEVNULL)
    m = json.loads((project / "outputs" / "detection" / "metrics.json").read_text())["detection"]
    print(f"{m['n_normal']} test good parts, {m['n_defect']} test bad parts; "
          f"calibration images: {m['threshold_summary']['n']}\n")
    print("| target pass rate | threshold | calibration 95% interval | test pass rate | inside | test detection |")
    print("|---|---|---|---|---|---|")
    for op in m["operating_points"]:
        if op.get("threshold") is None:
            print(f"| {op['target']:g} | - | {op['note']} | - | - | - |")
            continue
        lo, hi = op["acceptance_ci95"]
        rate, caught = op["test_accepted"], op["test_rejected"]
        print(f"| {op['target']:g} | {op['threshold']:.4g} | [{lo:.3f}, {hi:.3f}] | {rate:.3f} | "
              f"{'yes' if lo <= rate <= hi else 'NO'} | {caught:.3f} |")


if __name__ == "__main__":
    main()

"""The baselines table of docs/results.md, from a project's cached results over splits and seeds.

    python examples/table_baselines.py PROJECT_DIR [--splits a,b,c] [--seeds 0,1]

Reads ``outputs/[seed_<n>/]split_<x>/metrics.json`` (written by ``osd osr`` / ``osd run-all``): the
locked method's AUROC per run, each baseline's, mean +- sample sd over the runs, and the locked
method minus the baseline (mean of the paired differences; in brackets on how many runs the 95%
paired interval excludes zero for the locked method / for the baseline). Computes nothing new.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from osd.osr.baselines import HUMAN as NAMES  # every baseline's name in a table, as the report shows it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project")
    ap.add_argument("--splits", default="a,b,c")
    ap.add_argument("--seeds", default="0,1")
    a = ap.parse_args()
    out = Path(a.project) / "outputs"
    seeds, splits = [int(s) for s in a.seeds.split(",")], a.splits.split(",")
    runs = []
    for seed in seeds:
        for split in splits:
            base = out if seed == seeds[0] else out / f"seed_{seed}"
            runs.append((f"{split.upper()}{seed}", json.loads((base / f"split_{split}" / "metrics.json").read_text())["osr"]))

    def ms(v: list[float]) -> str:
        return f"{statistics.mean(v):.3f} +- {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    head = [name for name, _ in runs]
    print(f"| approach | {' | '.join(head)} | AUROC mean +- sd | open-set acc. mean +- sd | "
          "locked minus it: AUROC [runs for / against] | open-set acc. [for / against] |")
    print("|" + "---|" * (len(head) + 5))
    locked = [m["auroc"] for _, m in runs]
    print(f"| **one-stage, locked Mahalanobis** | {' | '.join(f'{v:.3f}' for v in locked)} | **{ms(locked)}** | "
          f"**{ms([m['open_set_accuracy'] for _, m in runs])}** | - | - |")
    msp = [m["msp"]["auroc"] for _, m in runs]
    print(f"| max softmax (= cascade stage 2) | {' | '.join(f'{v:.3f}' for v in msp)} | {ms(msp)} | "
          f"{ms([m['msp']['open_set_accuracy'] for _, m in runs])} | - | - |")
    names = [n for n in NAMES if all(n in m.get("baselines", {}) for _, m in runs)]
    for n in names:
        b = [m["baselines"][n] for _, m in runs]
        cells = []
        for key in ("auroc", "open_set_accuracy"):
            d = [x["locked_minus_baseline"][key] for x in b]
            pro = sum(1 for x in d if x["excludes_zero"] and x["difference"] > 0)
            con = sum(1 for x in d if x["excludes_zero"] and x["difference"] < 0)
            cells.append(f"{statistics.mean(x['difference'] for x in d):+.3f} [{pro} / {con}]")
        per_run = " | ".join(f"{x['auroc']:.3f}" for x in b)
        print(f"| {NAMES[n]} | {per_run} | {ms([x['auroc'] for x in b])} | "
              f"{ms([x['open_set_accuracy'] for x in b])} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()

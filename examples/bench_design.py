"""What a study costs, step by step: run it (or read a run's JSON) and add up each step's time.

    python examples/bench_design.py PROJECT_DIR [--set KEY=VALUE ...] [--seeds 0] [--json OUT]
    python examples/bench_design.py --from-json RUN.json [--from-json RUN2.json ...]

Runs ``osd run-all`` through the API (``osd.Project.run_all``) and prints, per step, the seconds it
took summed over the splits (computed steps only; a cached step costs nothing), the splits and
seeds, and the wall time. Several ``--from-json`` files (``osd run-all --json > run.json``) print
side by side, with each step's time as a ratio of the first file's: the default regimen's run
beside a cheaper one. Time a benchmark alone: two torch processes on two cores slow each other
several-fold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def per_step(run: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in run["steps"]:
        if not s["cached"]:
            out[s["step"]] = out.get(s["step"], 0.0) + float(s["seconds"])
    return out


def table(names: list[str], runs: list[dict]) -> str:
    steps = list(dict.fromkeys(k for r in runs for k in per_step(r)))
    first = per_step(runs[0])
    lines = [f"{'step':28s}" + "".join(f"{n[:22]:>24s}" for n in names)]
    for step in [*steps, "wall (run-all)"]:
        cells = []
        for r in runs:
            v = float(r["seconds"]) if step == "wall (run-all)" else per_step(r).get(step)
            ref = float(runs[0]["seconds"]) if step == "wall (run-all)" else first.get(step)
            ratio = f" ({v / ref:.2f}x)" if v is not None and ref and r is not runs[0] else ""
            cells.append("-" if v is None else f"{v / 60:.1f} min{ratio}")
        lines.append(f"{step:28s}" + "".join(f"{c:>24s}" for c in cells))
    splits = [len({s["split"] for s in r["steps"] if s["split"] not in ("-",)}) for r in runs]
    sizes = [f"{n} x {len(r.get('seeds') or [0])}" for n, r in zip(splits, runs)]
    lines.append(f"{'splits x seeds':28s}" + "".join(f"{c:>24s}" for c in sizes))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path, nargs="?")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-json", type=Path, action="append", default=[])
    a = ap.parse_args()
    if a.from_json:
        runs = [json.loads(p.read_text()) for p in a.from_json]
        print(table([p.stem for p in a.from_json], runs))
        return
    from osd import Project

    p = Project(a.project, a.overrides)
    run = p.run_all(seeds=[int(s) for s in a.seeds.split(",") if s] or None).to_dict()
    if a.json:
        a.json.write_text(json.dumps(run, indent=1, default=str))
    print(table([str(a.project)], [run]))


if __name__ == "__main__":
    main()

"""Operating points for the report: each threshold osd sets, at other acceptance targets, as the runs
recorded them (set on validation or calibration data; their effect measured on test data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from osd.report.format import fmt, fmt_ci

# (threshold, where a run recorded its operating points, what passes, what is rejected)
THRESHOLDS: dict[str, tuple[Callable[[Any], Any], str, str]] = {
    "tau": (lambda r: r.osr and r.osr.operating_points.get("tau"), "test knowns accepted", "test unknowns rejected"),
    "kappa": (lambda r: r.osr and r.osr.operating_points.get("kappa"), "test knowns accepted",
              "test unknowns rejected"),
    "patchcore": (lambda r: r.cascade and (r.cascade.stage1.get("operating_points") or {}).get("patchcore"),
                  "test normals passed", "defect test images flagged"),
}
NAMES = {"tau": "tau (one-stage squared distance; above it: unknown)",
         "kappa": "kappa (max softmax; below it: unknown)",
         "patchcore": "stage-1 threshold (PatchCore score; above it: defect)"}
SIGN = {"kappa": -1.0}  # kappa is fitted on -msp (one score sign); shown as the max softmax it stands for


def operating_tables(runs: list[Any], configured: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per threshold: one row per target, over the runs that hold it (means of the test shares; the
    threshold and its interval as the single run gives them, or their range over runs).
    ``configured``: each threshold's target in osd.toml, to say what the study did where a target
    has too few images for its order statistic."""
    out = {}
    for name, (points_of, accepted, rejected) in THRESHOLDS.items():
        per_run = [p for p in (points_of(r) for r in runs) if isinstance(p, list) and p]
        if not per_run:
            continue
        rows = []
        for i, first in enumerate(per_run[0]):
            got = [p[i] for p in per_run if i < len(p) and p[i].get("target") == first["target"]]
            ok = [g for g in got if g.get("threshold") is not None]
            if not ok:
                note = str(first.get("note", ""))
                if abs((configured or {}).get(name, -1) - first["target"]) < 1e-9:
                    note += "; the study's own threshold at this target accepts every calibration image"
                rows.append([f"{first['target']:.3g}", "-", "-", "-", "-", note])
                continue
            thr = [SIGN.get(name, 1.0) * g["threshold"] for g in ok]
            row_thr = fmt(thr[0]) if len(thr) == 1 else f"{fmt(min(thr))} to {fmt(max(thr))}"
            ci = fmt_ci(ok[0].get("acceptance_ci95")) if len(ok) == 1 else "per run under Details"
            acc = [g["test_accepted"] for g in ok if g.get("test_accepted") is not None]
            rej = [g["test_rejected"] for g in ok if g.get("test_rejected") is not None]
            rows.append([f"{first['target']:.3g}", row_thr, ci or "-", fmt(float(np.mean(acc))) if acc else "-",
                         fmt(float(np.mean(rej))) if rej else "-",
                         "" if len(ok) == len(got) else f"{len(got) - len(ok)} run(s): too few images"])
        out[name] = {"title": NAMES[name], "head": ["target acceptance", "threshold", "acceptance interval (95%)",
                                                    accepted, rejected, "note"],
                     "rows": rows, "runs": len(per_run)}
    return out

"""Operating points for the report: each threshold osd sets, at other acceptance targets, as the runs
recorded them (set on validation or calibration data; their effect measured on test data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from osd.report.format import fmt, fmt_ci
from osd.types import JsonObject

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


def _test_cell(ok: list[JsonObject], key: str) -> str:
    """A test share: one run with its exact 95% interval over the test images; several runs, their mean
    and the range over runs (not a confidence interval)."""
    vals = [g[key] for g in ok if g.get(key) is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{fmt(vals[0])} {fmt_ci(ok[0].get(f'{key}_ci95'))}".strip()
    return f"{fmt(float(np.mean(vals)))} (runs {fmt(min(vals))} to {fmt(max(vals))})"


def operating_tables(runs: list[Any], configured: dict[str, float] | None = None) -> dict[str, JsonObject]:
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
            cis = [g["acceptance_ci95"] for g in ok if g.get("acceptance_ci95")]
            ci = fmt_ci(cis[0]) if len(ok) == 1 and cis else (
                f"{fmt_ci([min(c[0] for c in cis), max(c[1] for c in cis)])} (widest of {len(cis)} runs)" if cis else "-")
            rows.append([f"{first['target']:.3g}", row_thr, ci, _test_cell(ok, "test_accepted"),
                         _test_cell(ok, "test_rejected"),
                         "" if len(ok) == len(got) else f"{len(got) - len(ok)} run(s): too few images"])
        out[name] = {"title": NAMES[name], "head": ["target acceptance", "threshold", "acceptance interval (95%)",
                                                    accepted, rejected, "note"],
                     "rows": rows, "runs": len(per_run)}
    return out

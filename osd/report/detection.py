"""The detection study's report: good parts and bad parts, answered first, read in a minute.

Reads each seed's :class:`osd.pipeline.detection.DetectionResult` (never ``metrics.json`` by key)
and writes ``summary.csv`` / ``summary.md`` and ``report.html``: the answer in two or three
sentences, one table per seed, the operating points an engineer chooses from, the detection rate
per defect class, and what could not be measured and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osd import artifacts
from osd._version import __version__
from osd.calibration_check import PredictiveCheck, check_words, predictive_check
from osd.config import Config
from osd.csvrows import csv_text
from osd.detection import KEYS, PASS_RATES, normals_needed
from osd.report.format import fmt, fmt_ci
from osd.report.html import STYLE, _esc, _img, _table
from osd.report.result import Report
from osd.types import JsonObject

HUMAN = {"normal_pass_rate": "normal pass rate (held-out good parts passed)",
         "detection_rate": "detection rate (bad parts flagged)",
         "auroc": "AUROC (defect positive)", "aupr": "AUPR (defect positive)",
         **{f"detection_at_pass_{p:g}": f"detection rate at a {p:.0%} normal pass rate (test ranking)"
            for p in PASS_RATES}}


def _cell(result: Any, key: str) -> str:
    v = result.metrics.values.get(key)
    if v is None and key.startswith("detection_at_pass_") and result.metrics.n_defect:
        need = normals_needed(float(key.rsplit("_", 1)[1]))
        return f"not read: {result.metrics.n_normal} test good parts, {need} needed"
    if v is None:
        return "not measured"
    return f"{fmt(v)} {fmt_ci(result.metrics.intervals95.get(key))}".strip()


def _class_cell(r: Any, cls: str) -> str:
    """A class's detection rate with its exact interval over that class's scored bad parts."""
    from osd.proportion import clopper_pearson

    rows = [row for row in r.rows if row["truth"] == "defect" and row["class"] == cls and row["score"] is not None]
    if not rows:
        return fmt(r.per_class.get(cls))
    k = sum(row["decision"] == "defect" for row in rows)
    return f"{fmt(k / len(rows))} {fmt_ci(clopper_pearson(k, len(rows)))} (n={len(rows)})"


def answer(results: dict[int, Any], acceptance: float) -> list[str]:
    """Two or three sentences: what the threshold does to good parts and to bad parts, as measured."""
    seed, r = next(iter(results.items()))
    m = r.metrics
    runs = f"seed {seed}" if len(results) == 1 else f"seed {seed} of {len(results)} (every seed in the table)"
    from osd.osr.thresholds import acceptance_words

    set_on = (acceptance_words(r.threshold_summary, r.unit) if r.threshold_summary.get("n")
              else f"set for a {acceptance:.0%} pass rate")
    out = [f"On {m.n_normal} held-out good part(s) and {m.n_defect} bad part(s) ({runs}), the threshold ({set_on}) "
           f"passes {_cell(r, 'normal_pass_rate')} of the good parts"
           + (f" and flags {_cell(r, 'detection_rate')} of the bad ones; AUROC {_cell(r, 'auroc')}."
              if "detection_rate" in m.values else ".")]
    if m.n_defect == 0:
        out.append("No defect images: the detection rate, AUROC and AUPR cannot be measured; add a folder of bad "
                   "parts (osd init --neu BAD --normal GOOD).")
    if len(results) > 1:
        def span(key: str) -> str:
            vals = [x.metrics.values[key] for x in results.values() if key in x.metrics.values]
            return f"{fmt(min(vals))} to {fmt(max(vals))}" if vals else "-"

        out.append(f"Over the {len(results)} seeds (each a new split of the good parts): normal pass rate "
                   f"{span('normal_pass_rate')}" + (f", detection rate {span('detection_rate')}, AUROC "
                                                   f"{span('auroc')}" if "detection_rate" in m.values else "") + ".")
    check = _predictive(r)
    if check is not None and (said := check_words(check, "good part" if r.unit != "crop" else "good crop")):
        out.append(said)
    ci = r.threshold_summary.get("acceptance_ci95")
    if ci:
        out.append(f"With {r.threshold_summary.get('n', '?')} calibration images the threshold's own pass "
                   f"rate is known only to {fmt_ci(ci)} (Clopper-Pearson 95%); more good parts narrow it.")
    return out


def _predictive(r: Any) -> PredictiveCheck | None:
    """The held-out good parts' pass count against the calibration's prediction (None where not known)."""
    t, m = r.threshold_summary, r.metrics
    rate = m.values.get("normal_pass_rate")
    if not (t.get("rank") and t.get("n") and m.n_normal and rate is not None and np.isfinite(rate)):
        return None
    return predictive_check(round(rate * m.n_normal), m.n_normal, int(t["rank"]), int(t["n"]))


def _rows(results: dict[int, Any]) -> list[JsonObject]:
    rows = []
    for seed, r in results.items():
        for k in KEYS:
            v = r.metrics.values.get(k)
            ci = r.metrics.intervals95.get(k) or [None, None]
            rows.append({"seed": seed, "metric": k, "value": v, "ci95_low": ci[0], "ci95_high": ci[1],
                         "n_normal": r.metrics.n_normal, "n_defect": r.metrics.n_defect,
                         "threshold": r.metrics.threshold})
    return rows


def _write_summary(layout: artifacts.Layout, results: dict[int, Any]) -> tuple[Any, Any]:
    rows = _rows(results)
    csv_path = artifacts.write_text(layout.summary, csv_text(list(rows[0]), rows))
    seeds = list(results)
    md = ["| metric | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    md += [f"| {HUMAN[k]} | " + " | ".join(_cell(results[s], k) for s in seeds) + " |" for k in KEYS]
    md_path = artifacts.write_text(layout.summary_md, "\n".join(md) + "\n")
    return csv_path, md_path


def _points(r: Any) -> str:
    body = []
    for p in r.operating_points:
        if p.get("threshold") is None:
            body.append([f"{p['target']:.1%}", "-", p.get("note", ""), "-", "-"])
            continue
        body.append([f"{p['target']:.1%}", fmt(p["threshold"]), fmt_ci(p.get("acceptance_ci95")),
                     f"{fmt(p.get('test_accepted'))} {fmt_ci(p.get('test_accepted_ci95'))}".strip(),
                     f"{fmt(p.get('test_rejected'))} {fmt_ci(p.get('test_rejected_ci95'))}".strip()])
    return _table(["target pass rate", "threshold", "pass rate interval (calibration)", "test: good parts passed",
                   "test: bad parts flagged"], body,
                  "Each threshold is set on the calibration images only; the last two columns are what it does on "
                  "the test images, with exact 95% intervals over them. Choose one with osd patchcore fit "
                  "--acceptance A (no refit). A target the calibration set is too small for says so instead of "
                  "repeating the largest score.")


def figures(layout: artifacts.Layout, r: Any) -> list[str]:
    """The two figures an engineer looks at: good and bad parts' score distributions with the operating
    points' thresholds drawn on them, and the ROC curve (none without scores of both kinds)."""
    import numpy as np

    from osd.report import plots

    normal = np.array([row["score"] for row in r.rows if row["truth"] != "defect" and row["score"] is not None], float)
    defect = np.array([row["score"] for row in r.rows if row["truth"] == "defect" and row["score"] is not None], float)
    if not normal.size:
        return []
    lines = {f"{p['target']:.0%} pass": float(p["threshold"]) for p in r.operating_points
             if p.get("threshold") is not None}
    if not any(abs(x - r.metrics.threshold) < 1e-12 for x in lines.values()):
        lines = {"the study's threshold": float(r.metrics.threshold), **lines}
    groups = {"held-out good parts": normal, **({"bad parts": defect} if defect.size else {})}
    out = [plots.histogram(groups, None, layout.detection_plot("scores"), "Stage-1 scores and operating points",
                           "PatchCore score (higher = more anomalous)", lines)]
    if defect.size:
        y = np.r_[np.zeros(normal.size, bool), np.ones(defect.size, bool)]
        out.append(plots.roc_curves({"PatchCore": (y, np.r_[normal, defect])}, layout.detection_plot("roc"),
                                    "Good vs bad parts", ("false positive rate (good parts flagged)",
                                                          "true positive rate (bad parts flagged)")))
    return [str(p) for p in out]


def render(cfg: Config, results: dict[int, Any], words: list[str], weights: str,
           figures: list[str] | None = None) -> str:
    seeds = list(results)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>osd detection report</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>Defect detection: good parts and bad parts</h1><p class=meta>osd {__version__}; project "
             f"{_esc(cfg.base_dir)}; normal images {_esc(cfg.normal.folder or cfg.normal.severstal_root)}; "
             f"defect images {_esc(next(iter(results.values())).defect_source)}<br>weights that produced these "
             f"numbers: {_esc(weights)}</p>",
             '<h2>The answer</h2><div class="answer">' + "".join(f"<p>{_esc(s)}</p>" for s in words) + "</div>",
             "<h2>Summary</h2>",
             _table(["metric", *(f"seed {s}" for s in seeds)],
                    [[HUMAN[k], *(_cell(results[s], k) for s in seeds)] for k in KEYS],
                    "95% intervals over the test images: the pass and detection rates exact Clopper-Pearson over "
                    "their own images, AUROC, AUPR and the test-ranking rows a stratified bootstrap (good and bad "
                    "parts resampled within themselves). The threshold never saw a test image. The 'test ranking' "
                    "rows read the rate off the test scores: they rank the detector, they are not decisions.")]
    first = results[seeds[0]]
    parts.append(f"<h2>Operating points (seed {seeds[0]})</h2>" + _points(first))
    if first.per_class:
        parts.append("<h2>Detection rate per defect class</h2>" + _table(
            ["class", *(f"seed {s}" for s in seeds)],
            [[c, *(_class_cell(results[s], c) for s in seeds)] for c in first.per_class],
            "Bad parts of each class flagged at the study's threshold, with the exact 95% interval over them."))
    if figures:
        parts.append(f"<h2>Good and bad parts' scores (seed {seeds[0]})</h2><div class=plots>"
                     + "".join(_img(f) for f in figures) + "</div>")
    missing = first.metrics.not_measured if not first.metrics.n_defect else []
    notes = [f"Unit: one {first.unit} per decision (an about-square image whole; a long strip cut into crops, "
             "scored by its largest).",
             f"Decision: defect when the PatchCore score is above the threshold ({fmt(first.metrics.threshold)}), "
             "else no_defect."]
    if missing:
        notes.append("Not measured (no defect images): " + ", ".join(HUMAN.get(k, k) for k in missing) + ".")
    parts.append("<h2>Caveats</h2>" + "".join(f'<div class="caveat">{_esc(c)}</div>' for c in notes))
    parts.append("</body></html>")
    return "\n".join(parts)


def build_detection_report(cfg: Config, seeds: list[int]) -> Report:
    """summary.csv / .md and report.html of the detection study's seeds on disk (recomputes nothing)."""
    from osd.errors import ArtifactError
    from osd.pipeline.detection import stored

    layout = artifacts.Layout(cfg.output_dir)
    results = {s: r for s in seeds if (r := stored(artifacts.Layout(cfg.for_seed(s).output_dir))) is not None}
    if not results:
        raise ArtifactError(f"{layout.detection}: no detection study on disk", rebuild="run-all")
    words = answer(results, cfg.patchcore.acceptance)
    weights = f"PatchCore {cfg.patchcore.backbone} ({cfg.patchcore.weights})"
    csv_path, md_path = _write_summary(layout, results)
    figs = figures(layout, next(iter(results.values())))
    html_path = artifacts.write_text(layout.report_html, render(cfg, results, words, weights, figs))
    return Report(str(csv_path), str(html_path), _rows(results), words, list(results), summary_md=str(md_path),
                  plots=figs, study="detection")

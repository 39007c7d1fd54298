"""``osd report``: metrics.json, summary.csv, plots and report.html from cached artifacts only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.errors import ArtifactError
from osd.report import plots
from osd.report.html import render_html

SUMMARY_METRICS = ("closed_set_accuracy", "auroc", "aupr_out", "fpr_at_95_tpr", "known_acceptance",
                   "unknown_rejection", "open_set_accuracy", "open_set_macro_f1", "oscr")
HUMAN = {
    "closed_set_accuracy": "closed-set accuracy", "auroc": "AUROC (unknown vs known)", "aupr_out": "AUPR-out",
    "aupr_in": "AUPR-in", "fpr_at_95_tpr": "FPR@95 (unknowns accepted)", "known_acceptance": "known acceptance",
    "unknown_rejection": "unknown rejection", "open_set_accuracy": "open-set accuracy",
    "open_set_macro_f1": "open-set macro-F1", "oscr": "OSCR",
}
# approach -> (section, subsection, what its numbers are computed from)
APPROACHES = {
    "one_stage_mahalanobis": ("osr", None, "configured one-stage score (Mahalanobis) and tau"),
    "max_softmax": ("osr", "msp", "negative max softmax and kappa; also the cascade's stage-2 ranking"),
    "cascade_strict": ("cascade", "strict", "cascade decisions, strict mode (decision metrics only)"),
    "cascade_ignore_no_defect": ("cascade", "ignore_no_defect",
                                 "cascade decisions, ignore_no_defect mode (decision metrics only)"),
}
LOWER_IS_BETTER = {"fpr_at_95_tpr"}
THREE_HUMAN = {
    "normal_pass_rate": "normal pass rate", "defect_detection_rate": "defect detection rate",
    "known_accuracy_detected": "known acc. (detected)", "unknown_rejection": "unknown rejection",
    "three_outcome_accuracy": "3-outcome accuracy", "three_outcome_macro_f1": "3-outcome macro-F1",
}


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _split_plots(layout: artifacts.Layout, name: str, metrics: dict[str, Any], pc_scores: dict[str, Any]) -> list[str]:
    out = layout.plots(name)
    made: list[Path] = []
    osr_rows = _read_csv(layout.osr(name) / "predictions.csv")
    cas_rows = _read_csv(layout.cascade(name) / "predictions.csv")
    if osr_rows:
        y = np.array([r["role"] == "unknown" for r in osr_rows])
        dist = np.array([float(r["distance"]) for r in osr_rows])
        msp = np.array([float(r["msp"]) for r in osr_rows])
        curves = {"one-stage Mahalanobis": (y, dist), "max-softmax": (y, -msp)}
        if cas_rows:
            yc = np.array([r["role"] == "unknown" for r in cas_rows])
            curves["cascade stage 2 (max-softmax)"] = (yc, -np.array([float(r["msp"]) for r in cas_rows]))
        made.append(plots.roc_curves(curves, out / "roc.png", f"Split {name.upper()}: known vs unknown"))
        tau = metrics.get("osr", {}).get("tau")
        made.append(plots.histogram({"known": dist[~y], "unknown": dist[y]}, tau, out / "distance_hist.png",
                                    f"Split {name.upper()}: Mahalanobis distance", "squared distance (higher = unknown)"))
        labels = sorted({r["true_label"] for r in osr_rows if r["role"] == "known"}) + ["unknown"]
        true = [r["true_label"] if r["role"] == "known" else "unknown" for r in osr_rows]
        made.append(plots.confusion(true, [r["pred_label"] for r in osr_rows], labels, out / "confusion_one_stage.png",
                                    f"Split {name.upper()}: one-stage (K+1)"))
    if cas_rows:
        labels = sorted({r["true_label"] for r in cas_rows if r["role"] == "known"}) + ["unknown", "no_defect"]
        true = [r["true_label"] if r["role"] == "known" else "unknown" for r in cas_rows]
        for mode in ("strict", "ignore_no_defect"):
            made.append(plots.confusion(true, [r[f"pred_{mode}"] for r in cas_rows], labels,
                                        out / f"confusion_cascade_{mode}.png", f"Split {name.upper()}: cascade {mode}"))
        s1 = np.array([float(r["stage1_score"]) for r in cas_rows])
        test_normals = pc_scores.get("test", {})
        test_normals = list(test_normals.values()) if isinstance(test_normals, dict) else test_normals
        groups = {"Severstal test normals (crops)": np.asarray([v for v in test_normals if v is not None], dtype=float),
                  "NEU known test": s1[[r["role"] == "known" for r in cas_rows]],
                  "NEU unknown test": s1[[r["role"] == "unknown" for r in cas_rows]]}
        made.append(plots.histogram(groups, pc_scores.get("threshold"), out / "patchcore_scores.png",
                                    f"Split {name.upper()}: PatchCore scores", "patch distance (higher = anomalous)"))
    bench = artifacts.read_json(layout.bench(name))
    if bench.get("one_stage"):
        made.append(plots.latency_bars(bench, out / "latency.png", f"Split {name.upper()}: latency by stage"))
    return [str(p) for p in made]


def _baseline_source(name: str) -> str:
    from osd.osr.baselines import NEEDS_IMAGES

    return "the same classifier again over the images" if name in NEEDS_IMAGES else "same embeddings and logits"


def _section_rows(name: str, m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for approach, (section, sub, source) in APPROACHES.items():
        block = m.get(section, {})
        if not isinstance(block, dict):
            continue
        block = block.get(sub, {}) if sub else block
        if not block:
            continue
        ci = block.get("intervals95", {})
        row: dict[str, Any] = {"split": name, "approach": approach, "computed_from": source}
        for k in SUMMARY_METRICS:
            row[k] = block.get(k)
            row[f"{k}_ci95"] = ci.get(k)
        rows.append(row)
    for vname, v in (m.get("osr", {}).get("variants") or {}).items():
        rows.append({"split": name, "approach": f"variant_{vname}",
                     "computed_from": f"variant, same embeddings: {v.get('features')} ({v.get('pooling')}), own tau",
                     **{k: v.get(k) for k in SUMMARY_METRICS}})
    for bname, b in (m.get("osr", {}).get("baselines") or {}).items():
        ci = b.get("intervals95") or {}
        d = (b.get("locked_minus_baseline") or {}).get("auroc") or {}
        rows.append({"split": name, "approach": f"baseline_{bname}",
                     "computed_from": f"baseline, {_baseline_source(bname)}: {b.get('score')}; own threshold; "
                                      f"locked minus it, AUROC {d.get('difference', float('nan')):+.3f} "
                                      f"{d.get('ci95')}",
                     **{k: b.get(k) for k in SUMMARY_METRICS}, **{f"{k}_ci95": ci.get(k) for k in SUMMARY_METRICS}})
    return rows


def provenance_notes(cfg: Config, m: dict[str, Any]) -> dict[str, list[str]]:
    """Per result section, the settings that produced it and differ from the current osd.toml."""
    notes = {}
    for section in ("osr", "cascade", "bench"):
        prov = m.get(section, {}).get("provenance") if isinstance(m.get(section), dict) else None
        if prov is None and section in m:
            notes[section] = ["no provenance recorded (made by an older osd): run the step again"]
        elif prov:
            diffs = cfg.differences(prov.get("config", {}))
            if diffs:
                notes[section] = diffs
    return notes


def _over_runs(per: list[tuple[str, dict[str, Any]]], seed: int = 0, n_boot: int = 4000) -> dict[str, Any]:
    """The mean difference over runs (split x seed) with a 95% interval that resamples runs and, within
    each, its images (through the run's own paired interval, read as a normal with that spread), and a
    Holm correction of the per-run tests for the number of runs compared."""
    from scipy.stats import norm

    d = np.array([v["difference"] for _, v in per], dtype=float)
    se = np.array([(v["ci95"][1] - v["ci95"][0]) / (2 * 1.96) if v.get("ci95") else 0.0 for _, v in per])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(d), (n_boot, len(d)))
    means = (d[pick] + rng.normal(size=pick.shape) * se[pick]).mean(axis=1)
    lo, hi = (float(x) for x in np.quantile(means, [0.025, 0.975]))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * norm.sf(np.abs(d) / np.where(se > 0, se, 1)), np.where(d != 0, 0.0, 1.0))
    order, m, holm = np.argsort(p), len(p), np.zeros(len(p), bool)
    for rank, i in enumerate(order):  # step-down: stop at the first run that is not significant
        if p[i] > 0.05 / (m - rank):
            break
        holm[i] = True
    names = [n for n, _ in per]
    return {"mean_ci95": [lo, hi], "holm_one_stage_better": [names[i].upper() for i in range(m) if holm[i] and d[i] > 0],
            "holm_cascade_better": [names[i].upper() for i in range(m) if holm[i] and d[i] < 0]}


def verdict(per_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The answer to the research question from each run's paired comparison, in rows and words.

    Per run (split x seed): does its 95% paired interval exclude zero (and, Holm-corrected for the
    number of runs, is it still significant). Over runs: the mean difference with an interval that
    resamples runs and images; one approach is called better overall only when it excludes zero.
    """
    from osd.decide import MODES
    from osd.pipeline.cascade import MODE_METRICS
    from osd.three_outcome import METRICS as THREE

    # (mode, section, comparison, metrics): the known/unknown comparison on defect images, and with the
    # line's own normal images (normal.in_domain) the three-outcome one on defect and normal images
    plan = [(m, "cascade", ("versus_one_stage", m), MODE_METRICS) for m in MODES] + [
        (f"three outcomes, {m}", "three_outcome", ("versus", f"one_stage_minus_cascade_{m}"), THREE) for m in MODES]
    rows, words = [], []
    for mode, section, (group, comparison), metrics in plan:
        for metric in metrics:
            per = []
            for name, info in per_split.items():
                block = info["metrics"].get(section)
                block = block if isinstance(block, dict) else {}
                v = ((block.get(group) or {}).get(comparison) or {}).get(metric)
                if isinstance(v, dict) and v.get("difference") is not None and np.isfinite(v["difference"]):
                    per.append((name, v))
                    rows.append({"mode": mode, "metric": HUMAN.get(metric) or THREE_HUMAN[metric],
                                 "split": name.upper(), **v})
            if not per:
                continue
            better = [n for n, v in per if v.get("excludes_zero") and v["difference"] > 0]
            worse = [n for n, v in per if v.get("excludes_zero") and v["difference"] < 0]
            mean = float(np.mean([v["difference"] for _, v in per]))
            overall = _over_runs(per)
            lo, hi = overall["mean_ci95"]
            word = "one-stage better" if lo > 0 else "cascade better" if hi < 0 else "no clear difference overall"
            words.append({"mode": mode, "metric": HUMAN.get(metric) or THREE_HUMAN[metric], "mean_difference": mean,
                          "averaged_over": f"{len(per)} run(s) (split x seed)", **overall, "verdict": word,
                          "splits_one_stage_better": [n.upper() for n in better],
                          "splits_cascade_better": [n.upper() for n in worse], "splits": len(per),
                          "comparisons": len(per)})
    return {"rows": rows, "summary": words}


def _verdict_sentence(v: dict[str, Any]) -> str:
    if not v["summary"]:
        return "No cascade results yet: run `osd cascade` or `osd run-all` for the comparison."
    key = [w for w in v["summary"] if w["metric"] in (HUMAN["open_set_accuracy"], THREE_HUMAN["three_outcome_accuracy"])]
    parts = []
    for w in key:
        lo, hi = w["mean_ci95"]
        three = w["mode"].startswith("three outcomes, ")
        mode = w["mode"].removeprefix("three outcomes, ")
        what = ("with the line's normal images in the test set, three-outcome accuracy (no_defect, known class, "
                "unknown)" if three else "open-set accuracy")
        parts.append(f"against the cascade in {mode} mode, one-stage minus cascade {what} averaged "
                     f"over {w['averaged_over']} is {w['mean_difference']:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}, "
                     f"resampling runs and images): {w['verdict']}; per run, the 95% paired interval excludes zero in "
                     f"favour of one-stage on {len(w['splits_one_stage_better'])} and of the cascade on "
                     f"{len(w['splits_cascade_better'])} of {w['comparisons']} comparisons "
                     f"({len(w['holm_one_stage_better'])} and {len(w['holm_cascade_better'])} after Holm's correction)")
    return "; ".join(parts) + "."


def _stats_rows(rows: list[dict[str, Any]], group: str, split: str | None = None) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (ddof=1) of every approach over ``rows``: over the seeds
    of one ``split`` (seed column "mean" / "std"), or over every run (split column "mean" / "std")."""
    out = []
    for approach in dict.fromkeys(r["approach"] for r in rows):
        sel = [r for r in rows if r["approach"] == approach]
        for stat, fn in (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1) if len(v) > 1 else float("nan"))):
            row: dict[str, Any] = {"split": stat if split is None else split, "seed": "all" if split is None else stat,
                                   "statistic": f"{stat} over {group} (n={len(sel)})", "approach": approach,
                                   "computed_from": sel[0]["computed_from"]}
            for k in SUMMARY_METRICS:
                vals = [r[k] for r in sel if r.get(k) is not None]
                val = float(fn(vals)) if vals else None
                row[k] = None if val is None or not np.isfinite(val) else val
            out.append(row)
    return out


def build_report(cfg: Config, splits: list[str] | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """Rebuild summary.csv, plots and report.html from what is on disk; it writes no metrics.json.

    Every number is shown with the settings that produced it; where the current osd.toml differs
    from those, the report says so next to the numbers (it does not recompute). With several
    seeds, each run is a row, with the mean and sample standard deviation over seeds per split and
    over all runs. ``seeds``: default ``project.seeds``, else every seed that has results on disk.
    """
    layout = artifacts.Layout(cfg.output_dir)
    # without seeds: project.seeds, else every seed with results on disk (a report after
    # `run-all --seeds 0,1` must not shrink to project.seed's runs)
    seeds = list(seeds or cfg.project.seeds or cfg.seeds_on_disk())
    runs = []  # (split, seed, config of that run, its layout)
    for seed in seeds:
        c = cfg.for_seed(seed)
        lay = artifacts.Layout(c.output_dir)
        runs += [(s, seed, c, lay) for s in (splits or c.split_names) if lay.metrics(s).is_file()]
    if not runs:
        raise ArtifactError(f"{layout.root}: no results yet; run `osd osr --split a` or `osd run-all` first")
    names = list(dict.fromkeys(r[0] for r in runs))
    pc_stats = artifacts.read_json(layout.patchcore / "fit_stats.json")
    rows: list[dict[str, Any]] = []
    per_split: dict[str, Any] = {}
    weights: dict[str, set[str]] = {"classifier": set(), "patchcore": set()}
    selection: set[Any] = set()  # splits.selection_fraction as recorded by each run's osr section
    chosen: list[str] = []  # the variant each run selects without test data
    for name, seed, c, lay in runs:
        m = read_metrics(lay.metrics(name), name)
        notes = provenance_notes(c, m)
        for section in ("osr", "cascade"):
            prov = (m.get(section) or {}).get("provenance") or {}
            w = prov.get("weights")
            if section == "osr" and w:
                weights["classifier"].add(_weights_name(w))
            if section == "osr" and prov:
                selection.add(prov.get("config", {}).get("splits.selection_fraction"))
            if section == "cascade" and isinstance(w, dict) and w.get("patchcore"):
                weights["patchcore"].add(_weights_name(w["patchcore"]))
        pick = (m.get("osr") or {}).get("selection") or {}
        if pick.get("selected"):
            scores = {k: v for k, v in (pick.get("validation_auroc") or {}).items() if v is not None}
            run = name if len(seeds) == 1 else f"{name} seed {seed}"
            if len(scores) > 1 and len({round(v, 3) for v in scores.values()}) == 1:
                chosen.append(f"{run}: cannot separate the variants (all {next(iter(scores.values())):.3f}); a tie is "
                              "not a choice, the locked method stays by rule")
            else:
                chosen.append(f"{run}: {pick['selected']} ({scores.get(pick['selected'], float('nan')):.3f}; locked "
                              f"penultimate {scores.get('penultimate', float('nan')):.3f})")
        split_rows = _section_rows(name, m)
        for r in split_rows:
            r["seed"] = seed
            section = "osr" if r["approach"].startswith(("one_stage", "max_softmax", "variant")) else "cascade"
            r["settings_differ_from_osd_toml"] = "; ".join(notes.get(section, []))
        rows += split_rows
        plot_files = _split_plots(lay, name, m, artifacts.read_json(lay.patchcore / "scores.json"))
        run_name = name if len(seeds) == 1 else f"{name} (seed {seed})"
        per_split[run_name] = {"metrics": m, "plots": plot_files, "provenance_notes": notes}
    three = [r for name, info in per_split.items() for r in _three_rows(name, info["metrics"])]
    per_run = list(rows)
    if len(seeds) > 1:
        for name in names:
            rows += _stats_rows([r for r in per_run if r["split"] == name], "seeds", name)
    rows += _stats_rows(per_run, "splits" if len(seeds) == 1 else "splits and seeds")
    v = verdict(per_split)
    verdict_plot = None
    if v["rows"]:
        sel = [r for r in v["rows"] if r["metric"] in (HUMAN["open_set_accuracy"], HUMAN["open_set_macro_f1"])]
        verdict_plot = str(plots.verdict_chart(sel, layout.root / "verdict.png",
                                               "One-stage minus cascade, per split"))
    summary = _write_summary(layout, rows)
    if three:
        _write_three_summary(layout, three)
    caveats = _caveats(cfg, weights, selection, chosen, per_split)
    stale = {n: info["provenance_notes"] for n, info in per_split.items() if info["provenance_notes"]}
    html = render_html(cfg, rows, per_split, pc_stats, caveats, v, _verdict_sentence(v), verdict_plot, three)
    report = artifacts.write_text(layout.root / "report.html", html)
    return {"summary_csv": str(summary), "report_html": str(report), "rows": rows, "splits": names, "seeds": seeds,
            "three_outcome_rows": three, "caveats": caveats, "verdict": v, "verdict_sentence": _verdict_sentence(v),
            "stale": stale,
            "plots": {k: val["plots"] for k, val in per_split.items()}}


def _write_csv(path: Path, cols: list[str], rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(r.get(k)) for k in cols})
    return artifacts.write_text(path, buf.getvalue())


def _write_summary(layout: artifacts.Layout, rows: list[dict[str, Any]]) -> Path:
    return _write_csv(layout.root / "summary.csv",
                      ["split", "seed", "approach", *[c for k in SUMMARY_METRICS for c in (k, f"{k}_ci95")],
                       "statistic", "computed_from", "settings_differ_from_osd_toml"], rows)


def _three_rows(run: str, m: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per approach of a run's three-outcome section (normal.in_domain), with intervals."""
    block = m.get("three_outcome")
    if not isinstance(block, dict):
        return []
    rows = []
    for approach, a in (block.get("approaches") or {}).items():
        ci = a.get("intervals95") or {}
        rows.append({"split": run, "approach": approach, **{k: a.get(k) for k in THREE_HUMAN},
                     **{f"{k}_ci95": ci.get(k) for k in THREE_HUMAN}, "role": a.get("role")})
    s1 = block.get("stage1_auroc") or {}
    for r in rows:  # stage 1 is the cascade's: its rows carry its image-level AUROC
        if r["approach"].startswith("cascade") and s1.get("auroc") is not None:
            r["stage1_image_auroc"], r["stage1_image_auroc_ci95"] = s1.get("auroc"), s1.get("ci95")
    return rows


def _write_three_summary(layout: artifacts.Layout, rows: list[dict[str, Any]]) -> Path:
    return _write_csv(layout.root / "summary_three_outcome.csv",
                      ["split", "approach", *[c for k in THREE_HUMAN for c in (k, f"{k}_ci95")], "stage1_image_auroc",
                       "stage1_image_auroc_ci95", "role"], rows)


def _data_caveat(cfg: Config) -> str:
    """What stage 1 was fitted on and applied to, from the configured data (never a fixed sentence)."""
    known = f"the known and unknown classes from {cfg.neu.root}"
    if cfg.normal.severstal_root:
        normal = f"Severstal's defect-free strips ({cfg.normal.severstal_root})"
    elif cfg.normal.folder:
        normal = f"the normal images in {cfg.normal.folder}"
    else:
        return f"No normal images are configured: only the one-stage approach ran, on {known}."
    if cfg.normal.in_domain:
        return (f"In-domain (normal.in_domain = true): stage 1 (PatchCore) is fitted on {normal}, of the same line as "
                f"{known}. The held-out normal images join every split's test set, so each approach is also judged "
                "on good parts (three outcomes: no_defect, a known class, unknown). The locked one-stage method has "
                "no no_defect answer: every normal test image counts against it there; the variant with normal as "
                "a known class is reported beside it. The known/unknown tables are over the defect images only.")
    return (f"Cross-domain: stage 1 (PatchCore) is fitted on {normal} and applied to {known}. The test images are "
            "all defect images, so 'strict' mode counts every stage-1 'normal' call on them as an error.")


def _caveats(cfg: Config, weights: dict[str, set[str]], selection: set[Any], chosen: list[str],
             per_split: dict[str, Any]) -> list[str]:
    wdesc = {k: ", ".join(sorted(v_)) or "unknown" for k, v_ in weights.items()}
    caveats = [
        f"Weights that produced these numbers (from each result's provenance): classifier {wdesc['classifier']}; "
        f"PatchCore {wdesc['patchcore']}. With 'none' (random init) PatchCore features carry little anomaly signal.",
        _data_caveat(cfg),
        "Thresholds were set on known validation images (tau, kappa) and calibration normals (PatchCore), "
        "never on test data. Intervals are 95% stratified bootstrap intervals over the test images.",
        _selection_caveat(selection),
    ]
    if chosen:
        caveats.append("Feature variant chosen without test data (pseudo-open-set on the known classes' training and "
                       "validation images, mean AUROC; reported only, the headline stays the locked method): "
                       + "; ".join(chosen) + ". Caveat: only the Mahalanobis head is refitted without the held-out "
                       "class; the backbone was trained on it, so its pseudo-unknowns are not unseen by the features "
                       "and the scores are optimistic (they saturate near 1 when the features separate the classes).")
    for n, info in per_split.items():
        for section, diffs in (info["provenance_notes"] or {}).items():
            caveats.append(f"Split {n} {section}: produced with settings that differ from the current "
                           f"osd.toml: {'; '.join(diffs[:6])}{' ...' if len(diffs) > 6 else ''}. "
                           "The numbers are shown as produced; rerun the step to update them.")
    if "SYNTHETIC" in _project_header(cfg):
        caveats.insert(0, "DEMO: the data is synthetic (osd init --demo). The numbers show that the pipeline "
                          "runs, nothing about real steel.")
    return caveats


def _selection_caveat(fractions: set[Any]) -> str:
    """How the classifier's epoch was chosen, as the runs recorded it (not as osd.toml says now)."""
    words = []
    for f in sorted(fractions, key=str):
        if f is None:
            words.append("not recorded (an earlier osd: the epoch was chosen on the same validation images that "
                         "set tau and kappa, which can make them optimistic)")
        elif float(f) == 0:
            words.append("0 (the last epoch was kept; all validation images set tau and kappa)")
        else:
            words.append(f"{f} (that share of the validation images chose the epoch; the rest, which no choice "
                         "had seen, set tau and kappa)")
    return "Epoch selection, splits.selection_fraction: " + "; ".join(words or ["no one-stage results"]) + "."


def _weights_name(w: Any) -> str:
    if not isinstance(w, dict):
        return str(w)
    if w.get("kind") == "file":
        return f"file {w.get('name')} (sha256 {str(w.get('sha256'))[:12]})"
    return str(w.get("kind")) + (f" ({w['source']})" if w.get("source") else "")


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return "-".join(f"{x:.4f}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


def _project_header(cfg: Config) -> str:
    p = cfg.base_dir / "osd.toml"
    try:
        return p.read_text(encoding="utf-8")[:400]
    except OSError:
        return ""


def read_metrics(path: Path, split: str) -> dict[str, dict[str, Any]]:
    """A split's metrics.json as sections that are JSON objects; anything else is left out with a
    warning that names the file, the section and the command that writes it again."""
    import warnings

    from osd.errors import OsdWarning

    data = artifacts.read_json(path)
    if not isinstance(data, dict):
        warnings.warn(f"{path}: holds a JSON {type(data).__name__}, not an object of sections; its results are left "
                      f"out (rerun `osd osr --split {split}`)", OsdWarning, stacklevel=2)
        return {}
    out = {}
    for section, value in data.items():
        if isinstance(value, dict) or section == "null_reasons":
            out[section] = value
        else:
            warnings.warn(f"{path}: section {section!r} is {json.dumps(value)[:40]}, not an object; left out "
                          f"(rerun `osd {section if section in ('osr', 'cascade', 'bench') else 'run-all'} "
                          f"--split {split}`)", OsdWarning, stacklevel=2)
    return out

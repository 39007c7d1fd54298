"""``osd report``: summary.csv, plots and report.html from the steps' cached records; it never recomputes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.csvrows import csv_text, summary_cell
from osd.errors import ArtifactError
from osd.osr.baselines import HUMAN as BASELINE_HUMAN
from osd.pipeline.detector import Stage1FitRecord, stored_stage1_fit
from osd.report import answer as said
from osd.report import plots
from osd.report.answer import HUMAN, Run, RunPage, answer, cell, interval_over_runs, lead_of, verdicts
from osd.report.caveats import caveats as report_caveats
from osd.report.caveats import weights_name
from osd.report.html import render_html
from osd.report.result import Report
from osd.types import Json, JsonObject
from osd.verdict import MetricVerdict

SUMMARY_METRICS = ("closed_set_accuracy", "auroc", "aupr_out", "fpr_at_95_tpr", "known_acceptance",
                   "unknown_rejection", "open_set_accuracy", "open_set_macro_f1", "oscr")
# approach -> what its numbers are computed from
APPROACHES = {
    "one_stage_mahalanobis": "configured one-stage score (Mahalanobis) and tau",
    "max_softmax": "negative max softmax and kappa; also the cascade's stage-2 ranking",
    "cascade_strict": "cascade decisions, strict mode (decision metrics only)",
    "cascade_ignore_no_defect": "cascade decisions, ignore_no_defect mode (decision metrics only)",
}
APPROACH_HUMAN = {
    "one_stage_mahalanobis": "one-stage, Mahalanobis (locked method)",
    "max_softmax": "max softmax (baseline; the cascade's stage 2)",
    "cascade_ignore_no_defect": "cascade, ignore_no_defect",
    "cascade_strict": "cascade, strict",
    "one_stage": "one-stage, Mahalanobis (locked method)",
    "one_stage_normal_class": "one-stage, normal as a known class (variant)",
    "variant_multilayer": "variant: several layers (Mahalanobis)",
    "variant_multilayer_mean_std": "variant: several layers, mean and std pooled",
    **{f"baseline_{name}": f"baseline: {human}" for name, human in BASELINE_HUMAN.items()},
}
# the headline table: the known/unknown metrics a reader compares, and the three-outcome ones
HEADLINE = ("closed_set_accuracy", "auroc", "fpr_at_95_tpr", "unknown_rejection", "open_set_accuracy",
            "open_set_macro_f1")
THREE_HEADLINE = ("normal_pass_rate", "defect_detection_rate", "known_accuracy_detected", "unknown_rejection",
                  "three_outcome_accuracy", "balanced_three_outcome_accuracy", "three_outcome_macro_f1",
                  "stage1_image_auroc")
LOWER_IS_BETTER = {"fpr_at_95_tpr"}
THREE_HUMAN = {k: HUMAN[k] for k in ("normal_pass_rate", "defect_detection_rate", "known_accuracy_detected",
                                    "unknown_rejection", "three_outcome_accuracy", "balanced_three_outcome_accuracy",
                                    "three_outcome_macro_f1")}


def _split_plots(layout: artifacts.Layout, run: Run, fit: Stage1FitRecord | None) -> list[str]:
    name = run.split
    made: list[Path] = []
    osr_rows = run.osr.rows.dicts() if run.osr else []
    cas_rows = run.cascade.rows.dicts() if run.cascade else []
    if osr_rows:
        y = np.array([r["role"] == "unknown" for r in osr_rows])
        dist = np.asarray(run.osr.rows.column("distance"), dtype=float)  # numbers as the record holds them
        msp = np.asarray(run.osr.rows.column("msp"), dtype=float)
        # the cascade's stage 2 ranks by the same max softmax: one curve, named for both
        curves = {"one-stage Mahalanobis": (y, dist),
                  "max-softmax (= cascade stage 2)" if cas_rows else "max-softmax": (y, -msp)}
        made.append(plots.roc_curves(curves, layout.plot(name, "roc"), f"Split {name.upper()}: known vs unknown"))
        made.append(plots.histogram({"known": dist[~y], "unknown": dist[y]}, run.osr.tau, layout.plot(name, "distance_hist"),
                                    f"Split {name.upper()}: Mahalanobis distance", "squared distance (higher = unknown)"))
        labels = sorted({r["true_label"] for r in osr_rows if r["role"] == "known"}) + ["unknown"]
        true = [r["true_label"] if r["role"] == "known" else "unknown" for r in osr_rows]
        made.append(plots.confusion(true, [r["pred_label"] for r in osr_rows], labels,
                                    layout.plot(name, "confusion_one_stage"), f"Split {name.upper()}: one-stage (K+1)"))
    if cas_rows:
        labels = sorted({r["true_label"] for r in cas_rows if r["role"] == "known"}) + ["unknown", "no_defect"]
        true = [r["true_label"] if r["role"] == "known" else "unknown" for r in cas_rows]
        for mode in ("strict", "ignore_no_defect"):
            made.append(plots.confusion(true, [r[f"pred_{mode}"] for r in cas_rows], labels,
                                        layout.plot(name, f"confusion_cascade_{mode}"),
                                        f"Split {name.upper()}: cascade {mode}"))
        s1 = np.asarray(run.cascade.rows.column("stage1_score"), dtype=float)
        test_normals = np.asarray(fit.test_scores if fit else [], dtype=float)
        unit = str((fit.stats if fit else {}).get("unit") or "crop")
        # named by role and unit, never by a data set: on a user's own line there is no NEU or Severstal
        groups = {f"held-out normal {unit}s": test_normals[np.isfinite(test_normals)],
                  "known-class test images": s1[[r["role"] == "known" for r in cas_rows]],
                  "unknown-class test images": s1[[r["role"] == "unknown" for r in cas_rows]]}
        made.append(plots.histogram(groups, fit.threshold if fit else None, layout.plot(name, "patchcore_scores"),
                                    f"Split {name.upper()}: PatchCore scores", "patch distance (higher = anomalous)"))
    if run.bench:
        made.append(plots.latency_bars(run.bench.section(), layout.plot(name, "latency"),
                                       f"Split {name.upper()}: latency by stage"))
    return [str(p) for p in made]


def _baseline_source(name: str) -> str:
    from osd.osr.baselines import NEEDS_IMAGES

    return "the same classifier again over the images" if name in NEEDS_IMAGES else "same embeddings and logits"


def _blocks(run: Run) -> dict[str, tuple[JsonObject, JsonObject]]:
    """Each headline approach of a run: (its metrics, their 95% intervals), from the records."""
    out: dict[str, tuple[JsonObject, JsonObject]] = {}
    if run.osr:
        out["one_stage_mahalanobis"] = (run.osr.osr, run.osr.intervals.get("osr") or {})
        out["max_softmax"] = (run.osr.msp, run.osr.intervals.get("msp") or {})
    if run.cascade:
        for mode in ("strict", "ignore_no_defect"):
            if run.cascade.modes.get(mode):
                out[f"cascade_{mode}"] = (run.cascade.modes[mode], run.cascade.intervals.get(mode) or {})
    return out


def _section_rows(run: Run) -> list[JsonObject]:
    name, rows, blocks = run.split, [], _blocks(run)
    for approach, source in APPROACHES.items():
        if approach not in blocks:
            continue
        block, ci = blocks[approach]
        row: JsonObject = {"split": name, "approach": approach, "computed_from": source}
        for k in SUMMARY_METRICS:
            row[k] = block.get(k)
            row[f"{k}_ci95"] = ci.get(k)
        rows.append(row)
    for vname, v in (run.osr.variants if run.osr else {}).items():
        rows.append({"split": name, "approach": f"variant_{vname}",
                     "computed_from": f"variant, same embeddings: {v.get('features')} ({v.get('pooling')}), own tau",
                     **{k: v.get(k) for k in SUMMARY_METRICS}})
    for bname, b in (run.osr.baselines if run.osr else {}).items():
        ci = b.get("intervals95") or {}
        d = (b.get("locked_minus_baseline") or {}).get("auroc") or {}
        rows.append({"split": name, "approach": f"baseline_{bname}",
                     "computed_from": f"baseline, {_baseline_source(bname)}: {b.get('score')}; own threshold; "
                                      f"locked minus it, AUROC {d.get('difference', float('nan')):+.3f} "
                                      f"{d.get('ci95')}",
                     **{k: b.get(k) for k in SUMMARY_METRICS}, **{f"{k}_ci95": ci.get(k) for k in SUMMARY_METRICS}})
    return rows


def provenance_notes(cfg: Config, run: Run) -> dict[str, list[str]]:
    """Per result, the settings that produced it and differ from the current osd.toml."""
    notes = {}
    for section, record in (("osr", run.osr), ("cascade", run.cascade), ("bench", run.bench)):
        diffs = cfg.differences(record.provenance.config) if record else []
        if diffs:
            notes[section] = diffs
    return notes


def verdict(runs: list[Run], in_domain: bool, hidden: dict[str, tuple[str, ...]] | None = None
            ) -> tuple[JsonObject, list[MetricVerdict]]:
    """The per-run comparison rows (for the chart and the CLI) and the overall reading of each
    comparison x metric, as the report's document; and the readings themselves
    (:func:`osd.report.answer.verdicts`), which the answer words."""
    found = verdicts(runs, in_domain, hidden)
    lead = lead_of(in_domain)
    rows = [{"mode": v.comparison, "metric": HUMAN[v.metric], "key": v.metric, "split": r.split.upper(), "seed": r.seed,
             # Holm covers the runs of the leading comparison and metric; every other test is exploratory
             "role": "primary" if (v.comparison, v.metric) == lead else "secondary (exploratory)",
             "difference": r.difference, "ci95": list(r.ci95) if r.ci95 else None, "p_value": r.p_value,
             "excludes_zero": r.excludes_zero, "holm_significant": r.holm_significant,
             "nan_replicates": r.nan_replicates} for v in found for r in v.runs]
    summary = [{**v.to_dict(), "role": "primary" if (v.comparison, v.metric) == lead else "secondary (exploratory)"}
               for v in found]
    return {"rows": rows, "summary": summary}, found


def _stats_rows(rows: list[JsonObject], group: str, split: str | None = None) -> list[JsonObject]:
    """Mean and sample standard deviation (ddof=1) of every approach over ``rows``: over the seeds
    of one ``split`` (seed column "mean" / "std"), or over every run (split column "mean" / "std")."""
    out = []
    for approach in dict.fromkeys(r["approach"] for r in rows):
        sel = [r for r in rows if r["approach"] == approach]
        for stat, fn in (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1) if len(v) > 1 else float("nan"))):
            row: JsonObject = {"split": stat if split is None else split, "seed": "all" if split is None else stat,
                                   "statistic": f"{stat} over {group} (n={len(sel)})", "approach": approach,
                                   "computed_from": sel[0]["computed_from"]}
            for k in SUMMARY_METRICS:
                vals = [r[k] for r in sel if r.get(k) is not None]
                val = float(fn(vals)) if vals else None
                row[k] = None if val is None or not np.isfinite(val) else val
            out.append(row)
    return out


def _runs_on_disk(cfg: Config, splits: list[str] | None, seeds: list[int]) -> list[tuple[Config, Run]]:
    """(config of that run, its records) of every (split, seed) whose one-stage step has a record."""
    from osd.records import BenchResult, CascadeResult, OsrResult, OutcomesResult, stored

    runs = []
    for seed in seeds:
        c = cfg.for_seed(seed)
        lay = artifacts.Layout(c.output_dir)
        for s in splits or c.split_names:
            osr = stored(OsrResult, lay.osr_evaluation(s), artifacts.plain)
            if osr is not None:
                runs.append((c, Run(s, seed, osr, stored(CascadeResult, lay.cascade_evaluation(s), artifacts.plain),
                                    stored(OutcomesResult, lay.outcomes_evaluation(s), artifacts.plain),
                                    stored(BenchResult, lay.bench_record(s), artifacts.plain))))
    if not runs:
        raise ArtifactError(f"{artifacts.Layout(cfg.output_dir).root}: no results yet (no split's one-stage "
                            "evaluation); run the study first")
    return runs


def _chosen_variant(pick: JsonObject, run: str) -> tuple[str, str] | None:
    """(run, the feature variant it selects without test data, in words); None when it selects none."""
    if not pick.get("selected"):
        return None
    scores = {k: v for k, v in (pick.get("validation_auroc") or {}).items() if v is not None}
    if len(scores) > 1 and len({round(v, 3) for v in scores.values()}) == 1:
        return (run, f"cannot separate the variants (all {next(iter(scores.values())):.3f}); a tie is not a choice, "
                "the locked method stays by rule")
    return (run, f"{pick['selected']} ({scores.get(pick['selected'], float('nan')):.3f}; locked penultimate "
            f"{scores.get('penultimate', float('nan')):.3f})")


@dataclass
class _Collected:
    """Every run's summary rows and page; the weights and the settings they record; the variants chosen."""

    rows: list[JsonObject] = field(default_factory=list)
    pages: dict[str, RunPage] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    weights: dict[str, set[str]] = field(default_factory=lambda: {"classifier": set(), "patchcore": set()})
    selection: set[Json] = field(default_factory=set)
    chosen: list[tuple[str, str]] = field(default_factory=list)


def _collect(runs: list[tuple[Config, Run]], seeds: list[int]) -> _Collected:
    """Every run's rows, plots and provenance notes; the weights and settings they record."""
    got = _Collected()
    for c, run in runs:
        name, seed, lay = run.split, run.seed, artifacts.Layout(c.output_dir)
        notes = provenance_notes(c, run)
        prov = run.osr.provenance if run.osr else artifacts.Provenance.empty()
        if prov.get("weights"):
            got.weights["classifier"].add(weights_name(prov.get("weights")))
        if prov:
            got.selection.add(prov.setting("splits.selection_fraction"))
        w = (run.cascade.provenance if run.cascade else artifacts.Provenance.empty()).get("weights")
        if isinstance(w, dict) and w.get("patchcore"):
            got.weights["patchcore"].add(weights_name(w["patchcore"]))
        run_name = name if len(seeds) == 1 else f"{name} (seed {seed})"
        chosen = _chosen_variant(run.osr.selection if run.osr else {}, name if len(seeds) == 1 else f"{name} seed {seed}")
        if chosen:
            got.chosen.append(chosen)
        for r in _section_rows(run):
            section = "osr" if r["approach"].startswith(("one_stage", "max_softmax", "variant")) else "cascade"
            got.rows.append({**r, "seed": seed, "settings_differ_from_osd_toml": "; ".join(notes.get(section, []))})
        got.pages[run_name] = RunPage(run, _split_plots(lay, run, stored_stage1_fit(lay)), notes)
        got.runs.append(run)
    return got


SAME_MARK = " \u2020"  # a dagger: the value is the same in every split (shown once, with its own interval)


def headline(rows: list[JsonObject], metrics: tuple[str, ...], approaches: list[str] | None = None,
             hidden: dict[str, tuple[str, ...]] | None = None) -> list[JsonObject]:
    """One row per approach: each metric's mean over runs and the interval that fits the runs
    (:func:`osd.report.answer.interval_over_runs`), as numbers and as a ``0.976 [0.961, 0.989]`` cell."""
    approaches = approaches or list(dict.fromkeys(r["approach"] for r in rows))
    out, hows = [], {}
    for a in approaches:
        sel = [r for r in rows if r["approach"] == a]
        if not sel:
            continue
        row: JsonObject = {"approach": a, "name": APPROACH_HUMAN.get(a, a.replace("_", " ")), "runs": len(sel)}
        for k in metrics:
            mean, ci, how = interval_over_runs([(r["split"], int(r.get("seed") or 0), r.get(k), r.get(f"{k}_ci95"),
                                                 (r.get("images") or {}).get(k), (r.get("calibration") or {}).get(k))
                                                for r in sel], hidden, metric=k)
            # a cell whose value is the same in every split carries its own interval, marked
            mark = SAME_MARK if how.startswith(("the same in every split", "the same for every seed")) else ""
            row[k], row[f"{k}_ci95"], row[f"{k}_cell"] = mean, list(ci) if ci else None, cell(mean, ci) + mark
            if how:
                hows[f"{mark.strip()} {how}".strip()] = None
        out.append(row)
    for row in out:  # one caption for the table: every kind of interval it holds
        row["interval"] = "; ".join(hows)
    return out


def _one_stage_alone(per_run: list[JsonObject], hidden: dict[str, tuple[str, ...]] | None) -> JsonObject | None:
    """The one-stage method's headline row where there is no cascade to compare with (no normal images)."""
    if any(r["approach"].startswith("cascade") for r in per_run):
        return None
    rows = headline(per_run, ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy"),
                    ["one_stage_mahalanobis"], hidden)
    return rows[0] if rows else None


def _normal_pass(three: list[JsonObject]) -> str | None:
    """The cascade's (strict) normal pass rate over runs, as the answer quotes it."""
    h = headline(three, ("normal_pass_rate",), ["cascade_strict"])
    return h[0]["normal_pass_rate_cell"] if h and h[0]["normal_pass_rate"] is not None else None


def regimen_ablations(layout: artifacts.Layout, own: JsonObject | None) -> list[JsonObject]:
    """The study run again with other training regimens (``<output_dir>/regimen_<N>``, as
    ``examples/regimen_validation.py`` and ``--set project.output_dir=outputs/regimen_N`` write them): each
    one's leading verdict beside this run's, an ablation the report shows and never chooses by."""
    out = []
    if own:
        out.append({"regimen": "this study (its own classifier.train_blocks)", **own})
    for record in sorted(layout.root.glob("regimen_*/report.json")):
        report = (artifacts.read_json(record) or {}).get("report") or {}
        lead = next((v for v in (report.get("verdict") or {}).get("summary") or [] if v.get("role") == "primary"),
                    None)
        if lead:
            n = record.parent.name.removeprefix("regimen_")
            out.append({"regimen": f"classifier.train_blocks = {n} ({record.parent.name}/)",
                        **{k: lead.get(k) for k in ("metric", "comparison", "mean_difference", "ci95", "claim",
                                                    "n_splits", "n_seeds")}})
    return out if len(out) > 1 else []


def design_hidden(cfg: Config, names: list[str]) -> dict[str, tuple[str, ...]] | None:
    """Each split's hidden classes when the splits run are a complete design (every way of hiding k
    of their classes, :mod:`osd.config.design`); None otherwise."""
    from osd.config.design import is_complete

    named = {n: cfg.split(n) for n in names if n in cfg.splits.named}
    return {n: tuple(sd.unknown) for n, sd in named.items()} if len(named) == len(names) and is_complete(named) \
        else None


def build_report(cfg: Config, splits: list[str] | None = None, seeds: list[int] | None = None) -> Report:
    """Rebuild summary.csv (and .md, .tex), plots and report.html from what is on disk; it writes no
    metrics.json and recomputes no step.

    Every number is shown with the settings that produced it; where the current osd.toml differs
    from those, the report says so next to the numbers. ``seeds``: default ``project.seeds``, else
    every seed that has results on disk (a report after ``run-all --seeds 0,1`` must not shrink).
    """
    from osd.report.tables import write_tables

    layout = artifacts.Layout(cfg.output_dir)
    seeds = list(seeds or cfg.project.seeds or cfg.seeds_on_disk())
    if cfg.project.study == "detection":
        from osd.report.detection import build_detection_report

        return build_detection_report(cfg, seeds or [cfg.project.seed])
    got = _collect(_runs_on_disk(cfg, splits, seeds), seeds)
    per_run, pages = got.rows, got.pages
    names = list(dict.fromkeys(r.split for r in got.runs))
    three = [r for page in pages.values() for r in _three_rows(page.run)]
    rows = list(per_run)
    if len(seeds) > 1:
        for name in names:
            rows += _stats_rows([r for r in per_run if r["split"] == name], "seeds", name)
    rows += _stats_rows(per_run, "splits" if len(seeds) == 1 else "splits and seeds")
    in_domain = bool(cfg.normal.in_domain and three)
    hidden = design_hidden(cfg, names)
    v, found = verdict(got.runs, in_domain, hidden)
    fit = stored_stage1_fit(layout)
    order = ["one_stage_mahalanobis", "cascade_ignore_no_defect", "cascade_strict", "max_softmax"]
    words = answer(found, in_domain, _normal_pass(three) if in_domain else None, cfg.patchcore.acceptance,
                   said.threshold_words(fit), said.three_outcome_mix(got.runs) if in_domain else None,
                   one_stage=_one_stage_alone(per_run, hidden), acceptance=cfg.osr.acceptance)
    tables = {"headline": headline(per_run, HEADLINE, order, hidden),
              "beside": headline(per_run, ("auroc", "fpr_at_95_tpr", "open_set_accuracy"),
                                 [a for a in dict.fromkeys(r["approach"] for r in per_run) if a not in APPROACHES],
                                 hidden),
              "three": headline(three, THREE_HEADLINE, ["one_stage", "cascade_strict", "cascade_ignore_no_defect",
                                                          "one_stage_normal_class"]) if three else []}
    chart = _verdict_chart(found, in_domain, layout, hidden)
    summary = _write_summary(layout, rows)
    if three:
        _write_three_summary(layout, three)
    md, tex = write_tables(layout, tables, HUMAN)
    caveats = report_caveats(cfg, got.weights, got.selection, got.chosen, pages)
    stale = {n: page.provenance_notes for n, page in pages.items() if page.provenance_notes}
    pc_stats = fit.shown() if fit else {}
    from osd.report.points import operating_tables

    points = operating_tables(got.runs, {"tau": cfg.osr.acceptance, "kappa": cfg.osr.acceptance,
                                            "patchcore": cfg.patchcore.acceptance})
    weights = "; ".join(f"{k} {', '.join(sorted(w)) or 'unknown'}" for k, w in got.weights.items() if w)
    lead = next((x for x in v["summary"] if x.get("role") == "primary"), None)
    ablation = regimen_ablations(layout, {k: lead.get(k) for k in ("metric", "comparison", "mean_difference", "ci95",
                                                                    "claim", "n_splits", "n_seeds")} if lead else None)
    html = render_html(cfg, tables, pages, pc_stats, caveats, v, words, chart, points, weights, ablation)
    report = artifacts.write_text(layout.report_html, html)
    return Report(str(summary), str(report), rows, words, seeds, caveats, str(md), str(tex), tables, names, three, v,
                  points, stale, {k: page.plots for k, page in pages.items()})


def _verdict_chart(every: list[MetricVerdict], in_domain: bool, layout: artifacts.Layout,
                   hidden: dict[str, tuple[str, ...]] | None = None) -> str | None:
    """The leading comparison's per-run differences, one panel per metric (None without a comparison)."""
    comparison, _ = lead_of(in_domain)
    found = [x for x in every if x.comparison == comparison] or every[:2]
    if not found:
        return None
    keep = ("balanced_three_outcome_accuracy", "three_outcome_accuracy", "three_outcome_macro_f1",
            "normal_pass_rate") if in_domain else (
        "open_set_accuracy", "open_set_macro_f1", "unknown_rejection")
    found = sorted((x for x in found if x.metric in keep), key=lambda x: keep.index(x.metric)) or found[:2]
    return str(plots.verdict_chart(found, layout.verdict_chart, HUMAN, hidden))


def _write_csv(path: Path, cols: list[str], rows: list[JsonObject]) -> Path:
    return artifacts.write_text(path, csv_text(cols, rows, summary_cell))


def _write_summary(layout: artifacts.Layout, rows: list[JsonObject]) -> Path:
    return _write_csv(layout.summary,
                      ["split", "seed", "approach", *[c for k in SUMMARY_METRICS for c in (k, f"{k}_ci95")],
                       "statistic", "computed_from", "settings_differ_from_osd_toml"], rows)


def _three_rows(run: Run) -> list[JsonObject]:
    """One row per approach of a run's three-outcome record (normal.in_domain), with intervals."""
    block = run.outcomes
    if block is None:
        return []
    rows = []
    for approach, a in block.approaches.items():
        ci = a.get("intervals95") or {}
        rows.append({"split": run.split, "seed": run.seed, "approach": approach, **{k: a.get(k) for k in THREE_HUMAN},
                     **{f"{k}_ci95": ci.get(k) for k in THREE_HUMAN}, "role": a.get("role"),
                     "calibration": {"normal_pass_rate": (block.thresholds or {}).get("patchcore_calibration_n")},
                     "images": {"normal_pass_rate": block.counts.get("normal"),
                                "defect_detection_rate": (block.counts.get("known") or 0) + (block.counts.get("unknown") or 0)}})
    s1 = block.stage1_auroc or {}
    for r in rows:  # stage 1 is the cascade's: its rows carry its image-level AUROC
        if r["approach"].startswith("cascade") and s1.get("auroc") is not None:
            r["stage1_image_auroc"], r["stage1_image_auroc_ci95"] = s1.get("auroc"), s1.get("ci95")
    return rows


def _write_three_summary(layout: artifacts.Layout, rows: list[JsonObject]) -> Path:
    return _write_csv(layout.summary_three_outcome,
                      ["split", "seed", "approach", *[c for k in THREE_HUMAN for c in (k, f"{k}_ci95")], "stage1_image_auroc",
                       "stage1_image_auroc_ci95", "role"], rows)

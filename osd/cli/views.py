"""What each study command shows: its result as rich tables (``--json`` prints the record instead)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from osd.cli.render import cached_tag, fmt, note, out, show, table, warning
from osd.types import JsonObject

if TYPE_CHECKING:
    from osd.report.result import Report
    from osd.study import StudyRun


def show_data_report(r: Any) -> None:
    folders = getattr(r, "class_folders", {}) or {}
    show(table(f"Images ({r.neu_layout or 'not found'}) in {r.neu_root}", ["class", "images", "from folders"],
               [*((c, n, ", ".join(folders.get(c, [])[:4]) + (" ..." if len(folders.get(c, [])) > 4 else ""))
                  for c, n in r.neu_counts.items()), ("total", sum(r.neu_counts.values()), "")],
               caption=f"labels: {r.label_rule}" if getattr(r, "label_rule", "") else None))
    if r.image_sizes and len(r.image_sizes) <= 8:
        show(table("Image sizes and formats", ["size / format", "images"],
                   [*r.image_sizes.items(), *r.image_formats.items()]))
    elif r.image_sizes:
        sm = r.image_size_summary
        show(table(f"Image sizes: {sm['distinct']} distinct over {sm['images']} images", ["", "min", "median", "max"],
                   [["width", sm["width"]["min"], sm["width"]["median"], sm["width"]["max"]],
                    ["height", sm["height"]["min"], sm["height"]["median"], sm["height"]["max"]]],
                   caption="commonest: " + ", ".join(f"{k} ({v})" for k, v in sm["commonest"].items())
                           + "; formats: " + ", ".join(f"{k} ({v})" for k, v in r.image_formats.items())))
    for name, s in r.splits.items():
        rows = []
        for cls, c in s["counts"].items():
            role = "known" if cls in s["known"] else "unknown" if cls in s["unknown"] else "normal (good parts)"
            rows.append([cls, role, c["train"], c.get("epoch_select", 0), c.get("threshold", 0), c["test"]])
        show(table(f"Split {name.upper()}", ["class", "role", "train", "epoch_select", "threshold", "test"],
                   rows, caption=f"manifest: {s['manifest']}"))
    show(table("Byte-identical duplicates (kept in one partition)", ["files"],
               [[" = ".join(g)] for g in r.duplicates] or [["none"]]))
    if r.unreadable:
        show(table("Unreadable files (skipped by every step)", ["path", "reason"],
                   [[u["path"], u["reason"]] for u in r.unreadable]))
    if r.normal:
        n = r.normal
        rows = [["source", f"{n.get('source')} ({n.get('root')})"]]
        if "csv_format" in n:
            rows.append(["train.csv format", n["csv_format"]])
        rows += [["normal images", n.get("normal_images")]]
        if "defective_images" in n:
            rows.append(["defective images", n["defective_images"]])
        show(table("Normal images (stage 1)", ["", ""], rows))
        if "partitions" in n:
            show(table("Normal partitions (split by image)", ["partition", "images", "usable crops"],
                       [[k, v["images"], v["crops"]] for k, v in n["partitions"].items()]))
    for msg in r.notes:
        note(msg)
    for msg in getattr(r, "warnings", []):
        warning(msg)
    if r.ok:
        out.print("[green]data usable[/]")


def show_train(r: Any) -> None:
    rows = [[h["epoch"], h["train_loss"], h.get("select_accuracy", "-"), h.get("select_loss", "-"), h["seconds"]]
            for h in r.history]
    show(table(f"Training history, split {r.split.upper()}", ["epoch", "train loss", "select acc", "select loss", "s"],
               rows))
    chosen = (["kept epoch", f"{r.best_epoch} (best on the select images)"] if r.selection_accuracy is not None
              else ["kept epoch", f"{r.best_epoch} (the last: splits.selection_fraction = 0)"])
    show(table(f"Classifier, split {r.split.upper()}", ["", ""], [
        ["model", f"{r.arch} ({r.weights} weights)"], ["classes", ", ".join(r.classes)],
        ["trained", "every block (full fine-tuning)" if r.trained_blocks is None else
         f"{', '.join(r.trained_blocks) or 'no block'} and the head (the rest frozen, shared by every split)"],
        chosen, ["select accuracy", "-" if r.selection_accuracy is None else r.selection_accuracy],
        ["training time (s)", r.seconds], ["checkpoint", r.path],
    ]))
    out.print(cached_tag(r.cached))


def show_validation(r: Any) -> None:
    rows = [[f"leave out {c}: AUROC", v] for c, v in r.loko_auroc.items()] + [["leave-one-out AUROC, mean", r.loko_mean]]
    show(table(f"Validation, split {r.split.upper()} ({r.regimen})", ["", ""], [
        ["closed-set accuracy (threshold images)", f"{r.closed_set_accuracy:.3f} of {r.n_threshold}"],
        *rows, ["seconds", r.seconds]],
        caption="each known class held out: a classifier trained without it, its threshold images scored as "
                "unknown against the others' (no test image)"))
    out.print(cached_tag(r.cached))


def show_embed(r: Any) -> None:
    show(table(f"Embeddings, split {r.split.upper()} ({r.dim}-d)", ["partition", "images"],
               [*r.counts.items(), ["images/s", r.images_per_second]], caption=r.path))
    out.print(cached_tag(r.cached))


def _with_ci(value: float, ci: Any) -> str:
    if isinstance(ci, list) and len(ci) == 2:
        return f"{value:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return fmt(value)


def show_calibration(r: Any) -> None:
    show(table(f"Thresholds, split {r.split.upper()} (set on {r.n_val} known validation images)", ["", ""], [
        ["tau (Mahalanobis; unknown when score > tau)", r.tau],
        ["kappa (max softmax; unknown when msp < kappa)", r.kappa],
        ["target acceptance", r.acceptance],
        ["validation accepted by tau (95% CI)", _with_ci(r.val_accepted_tau, r.tau_summary.get("acceptance_ci95"))],
        ["validation accepted by kappa (95% CI)",
         _with_ci(r.val_accepted_kappa, r.kappa_summary.get("acceptance_ci95"))],
        ["rule", "k-th smallest validation score, k = ceil((n+1) x target)"],
        ["covariance / normalisation", f"{r.covariance} / {r.normalize}"],
        [f"features ({len(r.blocks)} blocks)", f"{r.features}: {', '.join(r.blocks)}"],
    ]))
    note(f"Mahalanobis score: {r.to_dict()['score_sign']}")
    out.print(cached_tag(r.cached))


METRIC_ROWS = [
    ("closed_set_accuracy", "closed-set accuracy (known test)"),
    ("auroc", "AUROC (unknown = positive)"),
    ("aupr_in", "AUPR-in"),
    ("aupr_out", "AUPR-out"),
    ("fpr_at_95_tpr", "FPR at 95% TPR (unknowns accepted)"),
    ("known_acceptance", "known acceptance at threshold"),
    ("unknown_rejection", "unknown rejection at threshold"),
    ("open_set_accuracy", "open-set accuracy (K+1)"),
    ("open_set_macro_f1", "open-set macro-F1 (K+1)"),
    ("oscr", "OSCR"),
]


def metrics_table(title: str, columns: dict[str, JsonObject], caption: str | None = None):
    """Metric rows x approach columns; a metric an approach does not have is '-', a 95% interval in brackets."""
    rows = []
    for key, label in METRIC_ROWS:
        if not any(key in col for col in columns.values()):
            continue
        cells = []
        for col in columns.values():
            v, ci = col.get(key), (col.get("intervals95") or {}).get(key)
            cells.append(_with_ci(v, ci) if isinstance(v, float) else fmt(v))
        rows.append([label, *cells])
    return table(title, ["metric", *columns], rows, caption=caption)


def _two_lines(value: Any, ci: Any, sign: str = "") -> str:
    """A value over its 95% interval, three decimals each: narrow enough for a table of several columns."""
    if not isinstance(value, float):
        return fmt(value)
    if isinstance(ci, list) and len(ci) == 2:
        return f"{value:{sign}.3f}\n[{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]"
    return f"{value:{sign}.3f}"


def beside_table(r: Any):
    """The variants and baselines as rows (human names), a few headline numbers each: a table that
    stays readable at 100 columns however many baselines are configured."""
    from osd.report.build import APPROACH_HUMAN

    rows = []
    for kind, items in (("variant", r.variants), ("baseline", getattr(r, "baselines", None) or {})):
        for k, v in items.items():
            ci = v.get("intervals95") or {}
            d = v.get("locked_minus_baseline") or {}
            rows.append([APPROACH_HUMAN.get(f"{kind}_{k}", f"{kind}: {k}"),
                         _two_lines(v.get("auroc"), ci.get("auroc")),
                         _two_lines(v.get("open_set_accuracy"), ci.get("open_set_accuracy")),
                         *(_two_lines((d.get(m) or {}).get("difference"), (d.get(m) or {}).get("ci95"), "+")
                           if d else "-" for m in ("auroc", "open_set_accuracy"))])
    return table("Beside the locked method (same classifier, each with its own threshold; never used to choose)",
                 ["approach", "AUROC", "open-set accuracy", "locked minus it: AUROC", "locked minus it: open-set acc."],
                 rows, caption="[95% interval: open-set accuracy exact Clopper-Pearson, AUROC bootstrap]; locked minus "
                               "it: the paired difference on the same test images (a variant has no paired test); "
                               "these paired tests are secondary (exploratory, not corrected for multiplicity)")


def show_osr(r: Any, steps: list[tuple[str, bool]] | None = None) -> None:
    first = next(iter([r.osr]))
    show(metrics_table(
        f"One-stage open-set recognition, split {r.split.upper()} "
        f"({first['n_known']} known / {first['n_unknown']} unknown test images)",
        {f"Mahalanobis, {r.features} (tau={r.tau:.4g})": {**r.osr, "intervals95": r.intervals.get("osr", {})},
         f"max-softmax (kappa={r.kappa:.4g})": {**r.msp, "intervals95": r.intervals.get("msp", {})}},
        caption="scores: higher = more unknown; unknown is the positive class; [95% interval: rates exact "
                "Clopper-Pearson over their images, the rest bootstrap]",
    ))
    if r.variants or getattr(r, "baselines", None):
        show(beside_table(r))
    sel = r.selection or {}
    if sel.get("selected"):
        scores = ", ".join(f"{k} {v:.3f}" for k, v in sel.get("validation_auroc", {}).items())
        note(f"chosen without test data (pseudo-open-set AUROC on validation, reported only): {sel['selected']} "
             f"({scores})")
    note(f"predictions: {r.predictions}\nmetrics: {r.metrics_path}")
    if steps:  # each step as it happened in this process (another process may have made some of them)
        out.print("; ".join(f"{name}: {cached_tag(c)}" for name, c in steps))
    else:
        out.print(f"{cached_tag(r.cached)} (classifier, embeddings, calibration and the test evaluation)")


def _search_text(search: JsonObject | None) -> str:
    if not search:
        return "exact"
    if search["exact"]:
        return f"exact ({search['search']}; {search['why']})"
    return (f"approximate: inverted file, {search['probe']} of {search['lists']} lists per query "
            f"({search['why']}; scores never below exact)")


def show_patchcore(r: Any) -> None:
    from osd.report.format import fmt_ci

    s = r.stats
    unit = s.get("unit", "crop")
    rows = [
        ["backbone", f"{s['backbone']} ({s['weights']} weights), {s['image_size']} px"],
        ["bank images", f"{s['bank_images']} of {s['bank_images_available']} bank-share normal images" + (
            f" (a seeded sample: patchcore.max_bank_images = {s['max_bank_images']})"
            if s['bank_images'] < s['bank_images_available'] else " (all of them)")],
        ["bank crops", s["bank_crops"]],
        ["patches before / after coreset", f"{s['patches_before']} / {s['patches_after']} (ratio {s['coreset_ratio']})"],
        ["coreset", "exact greedy k-center" if s.get("coreset", "greedy") == "greedy" else
         f"greedy k-center per chunk of {s['chunk_patches']:,} patches ({s['chunks']} chunk(s); time linear in patches)"],
        ["nearest-neighbour search", _search_text(s.get("search"))],
        ["feature dim (projection for selection)", f"{s['dim']} ({s['projection_dim']})"],
        ["bank size (MB)", s["bank_mb"]],
        ["feature extraction (s)", s["extract_seconds"]],
        ["coreset selection (s)", s["select_seconds"]],
        [f"calibration {unit}s / test {unit}s", f"{s.get('calibration_units', s['calibration_crops'])} / "
                                                f"{s.get('test_units', s['test_crops'])}"],
        [f"threshold (accepts {r.acceptance:.0%} of calibration {unit}s)", r.threshold],
        [f"acceptance interval (95%, Clopper-Pearson over {unit}s)", fmt_ci(r.threshold_summary.get("acceptance_ci95"))],
        [f"false-alarm rate on test normal {unit}s", r.false_alarm_rate],
    ]
    d = r.indomain or {}
    if d.get("available"):
        rows += [
            ["in-domain: defect / clean crops", f"{d['defect_crops']} / {d['clean_crops_of_defective_images']} "
                                               f"(+{d['normal_test_crops']} normal test crops)"],
            ["in-domain AUROC (defect crops vs normal)", d["auroc"]],
            ["in-domain detection / false-alarm rate", f"{fmt(d['detection_rate'])} / {fmt(d['false_alarm_rate'])}"],
        ]
    show(table("PatchCore (stage 1)", ["", ""], rows,
               caption=f"score: higher = more anomalous; unit: {s.get('unit_description') or unit}"))
    anew = not r.cached and "thresholded_anew_from_acceptance" in r.stats
    out.print("[green]thresholded anew (the fit itself was not repeated)[/]" if anew else cached_tag(r.cached))


def show_cascade(r: Any, first: str = "ignore_no_defect") -> None:
    order = [first] + [m for m in r.modes if m != first]
    k = f"kappa={r.kappa:.4g}" if r.kappa is not None else "no kappa"
    show(metrics_table(f"Two-stage cascade, split {r.split.upper()} (stage-1 threshold {r.threshold:.4g}, {k})",
                       {**{f"decisions: {m}": r.modes[m] for m in order},
                        "stage 2 ranking (max softmax)": r.stage2},
                       caption="modes: decision metrics only; strict: stage-1 'normal' means no_defect (always wrong "
                               "on NEU); ignore_no_defect: stage 2 decides every image. Stage 2's ranking metrics "
                               "are the classifier's max softmax, the same as the one-stage max-softmax baseline"))
    show(table("Stage 1", ["", ""], [
        ["detection rate (NEU test flagged as defect)", r.stage1_detection_rate],
        ["false-alarm rate (test normals, in the threshold's unit)", r.stage1_false_alarm_rate],
    ]))
    rows = []
    for mode, per in r.versus_one_stage.items():
        for metric, v in per.items():
            rows.append([f"{metric} vs {mode}", _with_ci(v["difference"], v.get("ci95")),
                         "not tested" if v.get("excludes_zero") is None else "yes" if v["excludes_zero"] else "no",
                         "-" if v.get("p_value") is None else fmt(v["p_value"])])
    if rows:
        show(table("One-stage minus cascade (same test images, paired bootstrap)",
                   ["metric", "difference [95% CI]", "excludes 0", "p"], rows,
                   caption="this run alone: the report's answer corrects for the runs compared (Holm) and reads "
                           "over splits"))
    if r.skipped:
        note(f"{len(r.skipped)} image(s) left out: " + "; ".join(f"{k}: {v}" for k, v in list(r.skipped.items())[:3]))
    note(f"predictions: {r.predictions}\nmetrics: {r.metrics_path}")
    out.print(f"{cached_tag(r.cached_stage1)} (stage-1 scores of the split's test images)")


def show_outcomes(r: Any) -> None:
    from osd.three_outcome import METRICS

    names = {"normal_pass_rate": "normal pass rate", "defect_detection_rate": "defect detection rate",
             "known_accuracy_detected": "known accuracy (detected known defects)", "unknown_rejection":
             "unknown rejection", "three_outcome_accuracy": "three-outcome accuracy",
             "balanced_three_outcome_accuracy": "balanced three-outcome accuracy",
             "three_outcome_macro_f1": "three-outcome macro-F1"}
    approaches = list(r.approaches)
    rows = [[names[k], *(_with_ci(r.approaches[a][k], (r.approaches[a].get("intervals95") or {}).get(k))
                         for a in approaches)] for k in METRICS]
    c = r.counts
    s1 = r.stage1_auroc
    show(table(f"Three outcomes, split {r.split.upper()} ({c['known']} known, {c['unknown']} unknown, "
               f"{c['normal']} normal test images)", ["metric", *(a.replace("_", " ") for a in approaches)], rows,
               caption=f"stage 1 image-level AUROC, defect vs normal test images: "
                       f"{_with_ci(s1['auroc'], s1.get('ci95'))}. one stage normal class: a variant beside the "
                       "locked method, never replacing it"))
    rows = [[f"{metric} ({name.replace('_minus_', ' - ').replace('_', ' ')})", _with_ci(v["difference"], v.get("ci95")),
             "yes" if v.get("excludes_zero") else "no"] for name, per in r.versus.items() for metric, v in per.items()
            if metric in ("normal_pass_rate", "defect_detection_rate", "three_outcome_accuracy")]
    show(table("Paired differences (same test images, bootstrap stratified by known / unknown / normal)",
               ["metric", "difference [95% CI]", "excludes 0"], rows))
    if r.skipped:
        note(f"{len(r.skipped)} image(s) left out: " + "; ".join(f"{k}: {v}" for k, v in list(r.skipped.items())[:3]))
    note(f"predictions: {r.predictions}\nmetrics: {r.metrics_path}")
    out.print(cached_tag(r.cached))


def show_bench(r: Any) -> None:
    rows = []
    for approach, a in (("one_stage", r.one_stage), ("two_stage", r.two_stage)):
        for stage, s in a["stages"].items():
            rows.append([f"{approach.replace('_', '-')}: {stage}", s["median_ms"], s["p95_ms"], ""])
        rows.append([f"[bold]{approach.replace('_', '-')} total[/]", a["latency"]["median_ms"], a["latency"]["p95_ms"],
                     a["throughput_images_per_s"]])
    show(table(f"Latency and throughput, split {r.split.upper()} ({r.device}, {r.threads} threads)",
               ["stage", "median ms (batch 1)", "p95 ms", f"images/s (batch {r.batch_size})"], rows,
               caption=f"{r.median_note}; peak RSS {r.peak_rss_mb:.0f} MB\n"
                       f"classifier {r.classifier}; PatchCore {r.patchcore}"))


APPROACH_SHORT = {"one_stage_mahalanobis": "one-stage (locked)", "one_stage": "one-stage (locked)",
                  "max_softmax": "max softmax", "cascade_ignore_no_defect": "cascade, ignore_no_defect",
                  "cascade_strict": "cascade, strict", "one_stage_normal_class": "one-stage + normal class"}
SHORT = {"closed_set_accuracy": "closed-set acc.", "auroc": "AUROC", "fpr_at_95_tpr": "FPR@95",
         "unknown_rejection": "unknown rej.", "open_set_accuracy": "open-set acc.", "open_set_macro_f1": "macro-F1",
         "normal_pass_rate": "normal pass", "defect_detection_rate": "defects found",
         "known_accuracy_detected": "known acc. (det.)", "three_outcome_accuracy": "3-outcome acc.",
         "balanced_three_outcome_accuracy": "balanced 3-outcome",
         "three_outcome_macro_f1": "3-outcome F1", "stage1_image_auroc": "stage-1 AUROC"}


def show_summary(r: Report) -> None:
    """The report's headline tables and its answer, as the page shows them (same cells)."""
    from osd.report.answer import HUMAN
    from osd.report.tables import TITLES

    for key in ("three", "headline"):
        rows = r.headline.get(key) or []
        if not rows:
            continue
        # metrics as rows, approaches as columns: a value and its interval fit a terminal this way
        cols = [k.removesuffix("_cell") for k in rows[0] if k.endswith("_cell")]
        t = table(TITLES[key], ["", *(APPROACH_SHORT.get(row["approach"], row["name"]) for row in rows)],
                  [[SHORT.get(c) or HUMAN.get(c, c), *(row[f"{c}_cell"] for row in rows)] for c in cols],
                  caption=f"mean over {rows[0]['runs']} run(s); 95% interval: {rows[0].get('interval') or '-'}")
        show(t)
    for sentence in r.answer:
        out.print(f"[bold]{sentence}[/]", highlight=False)
    for c in r.caveats:
        note("caveat: " + c)
    also = ", ".join(k.removeprefix("summary_") for k in ("summary_md", "summary_tex") if getattr(r, k))
    out.print(f"summary: {r.summary_csv} (also .{also.replace(', ', ', .')})\nreport:  {r.report_html}")


def show_run_all(r: StudyRun) -> None:
    from osd.report.format import fmt_seconds

    show(table("Steps", ["split", "seed", "step", "time", "cached"],
               [[s.split, s.seed, s.step, fmt_seconds(s.seconds), s.cached] for s in r.steps],
               caption=f"total {fmt_seconds(r.seconds)}"))
    show_summary(r.report)
    for msg in r.info:
        note(msg)
    for msg in r.notes:
        warning(msg)

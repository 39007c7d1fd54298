"""Step ``cascade``: PatchCore says defect / no defect, then the split's classifier names the class.

What each cascade number is computed from:
- ``stage2``: the classifier's ranking of known vs unknown by its max softmax (AUROC, AUPR, FPR@95,
  OSCR, closed-set accuracy). It is the same score in both modes and the same as the one-stage
  max-softmax baseline, so it appears once, labelled as stage 2's.
- ``strict`` / ``ignore_no_defect``: the decisions of each mode only (known acceptance, unknown
  rejection, open-set accuracy, macro-F1). A stage-1 ``no_defect`` is a wrong answer for every
  NEU image in ``strict``; ``ignore_no_defect`` lets stage 2 decide every image.
- ``stage1``: detection rate on the split's NEU test images and the false-alarm rate on held-out
  normal crops, at the threshold set on calibration normals.
- ``versus_one_stage``: one-stage minus each mode on the same test images, with paired bootstrap
  intervals.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from osd import artifacts, decide, runtime
from osd.decide import MODES, NO_DEFECT
from osd.errors import OsdWarning
from osd.metrics import RANKING, metric_intervals, open_set_metrics
from osd.osr.embeddings import Embeddings
from osd.osr.model import EvalArrays, data_counts, test_arrays
from osd.patchcore.stage1 import score_images
from osd.pipeline.detector import SECTIONS as DETECTOR_SECTIONS
from osd.pipeline.detector import stage1_fit, stage1_models
from osd.pipeline.job import Job
from osd.pipeline.osr import SECTIONS as OSR_SECTIONS
from osd.pipeline.osr import calibrated, calibration_result
from osd.pipeline.train import embedded
from osd.progress import Reporter, ensure
from osd.records import STAGE1_UNIT, CascadeResult, Rows, cached_sections
from osd.types import JsonObject

STAGE1_ALGORITHM = "stage1-scores/4"  # 4: a long image is scored per crop, as predict does; 3: relative paths
# 5: the payload is the CascadeResult record
# 4: per-run p-values from the paired bootstrap replicates, stage-1 operating points; 3: a cached step; 2: stage 2
# 7: FPR@95 exact, no zero-width bootstrap interval; 6: single rates with exact Clopper-Pearson intervals
CASCADE_ALGORITHM = "cascade/8"  # 8: AUROC and FPR@95 intervals at their edges
MODE_METRICS = ("known_acceptance", "unknown_rejection", "open_set_accuracy", "open_set_macro_f1")


def stage1_scores(job: Job, split: str, force: bool = False, reporter: Reporter | None = None
                  ) -> tuple[dict[str, float], dict[str, str], bool]:
    """PatchCore scores of the split's test images by path, the unreadable ones with reasons; cached."""
    step = stage1_step(job, split, force, reporter)
    return dict(step.payload["scores"]), dict(step.payload["skipped"]), step.cached


def stage1_step(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The stage-1 scores artifact of a split's test images (one rule with ``predict``: see score_images)."""
    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    manifest = job.manifest(split)
    fit = stage1_fit(job, reporter=reporter)
    key = artifacts.cache_key("stage1-scores", STAGE1_ALGORITHM, fit.artifact_id, manifest.fingerprint())
    path = job.layout.stage1_scores(split)

    @runtime.scoped
    def compute() -> tuple[dict[str, Any], artifacts.Provenance]:
        device = job.resources.setup()
        detector, extractor, _ = stage1_models(job, device, reporter)
        entries = manifest.test()
        scores, skipped = score_images(detector, extractor, [e.path for e in entries], job.stage1_sizes, device, reporter,
                                       f"stage 1, split {split}")
        by_path = {e.rel: float(v) for e, v in zip(entries, scores) if np.isfinite(v)}  # relative to neu.root
        skipped = {next((e.rel for e in entries if str(e.path) == k), k): v for k, v in skipped.items()}
        prov = artifacts.provenance(cfg, "stage 1 scores", STAGE1_ALGORITHM, key, DETECTOR_SECTIONS,
                                    {"detector": fit.artifact_id, "manifest": manifest.fingerprint()}, split=split)
        return {"scores": by_path, "skipped": skipped}, prov

    return artifacts.cached_step(path, key, compute, force=force, on_wait=reporter.note)


def _paired_verdict(t: EvalArrays, one: np.ndarray, modes: dict[str, np.ndarray], closed: np.ndarray,
                    classes: list[str], n_boot: int, seed: int) -> JsonObject:
    from osd.metrics import EncodedResults, paired_difference

    unk = np.asarray(t.is_unknown, dtype=bool)
    a = EncodedResults(t.labels, one, closed, None, unk, classes)
    return {mode: paired_difference(a, EncodedResults(t.labels, pred, closed, None, unk, classes), MODE_METRICS,
                                    unk, n_boot, seed) for mode, pred in modes.items()}


def _stage1_points(fit, defect_scores: np.ndarray) -> JsonObject:
    """The stage-1 threshold at each acceptance target, set on the calibration normals in its unit."""
    from osd.osr.thresholds import operating_points

    unit = fit.stats.get("unit", "crop")
    return {"fitted_on": f"calibration normals (per {unit})", "accepted": f"held-out normal test {unit}s",
            "rejected": "the split's defect test images",
            "patchcore": operating_points(np.asarray(fit.calibration_scores), np.asarray(fit.test_scores),
                                          defect_scores)}


def _join(t: EvalArrays, scores: dict[str, float], skipped: dict[str, str], split: str) -> EvalArrays:
    """The test arrays of the images with a stage-1 score, joined by path, never by position; an image
    without one (unreadable at stage 1) is left out, named in ``skipped``, with a warning."""
    keep = np.array([p in scores for p in t.paths], dtype=bool)
    missing = [p for p, k in zip(t.paths, keep) if not k]
    if missing:
        for p in missing:
            skipped.setdefault(p, "no stage-1 score")
        warnings.warn(f"cascade, split {split}: {len(missing)} test image(s) without a stage-1 score left out: "
                      + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""), OsdWarning, stacklevel=3)
    t = t.where(keep)
    return dataclasses.replace(t, stage1=np.array([scores[p] for p in t.paths], dtype=np.float64))


PREDICTION_HEADER = ("path", "true_label", "role", "stage1_score", "stage1_decision", "pred_strict",
                     "pred_ignore_no_defect", "msp")


def _rows(job: Job, t: EvalArrays, defect: np.ndarray, preds: dict[str, np.ndarray], msp: np.ndarray) -> Rows:
    cfg = job.cfg
    root = cfg.path(cfg.neu.root)
    return Rows.of(PREDICTION_HEADER, ([str(root / t.paths[i]), t.labels[i],
                                        "unknown" if t.is_unknown[i] else "known", float(t.stage1[i]),
                                        "defect" if defect[i] else NO_DEFECT, preds["strict"][i],
                                        preds["ignore_no_defect"][i], float(msp[i])] for i in range(len(t.stage1))))


def _evaluate(job: Job, split: str, fit, cal: artifacts.Step, emb: artifacts.Step, s1: artifacts.Step,
              key: str) -> tuple[dict[str, Any], artifacts.Provenance]:
    cfg = job.cfg
    res = calibration_result(job, split, cal)
    skipped = dict(s1.payload["skipped"])
    e = Embeddings.from_payload(emb.payload)
    t = _join(test_arrays(e, list(cal.payload["blocks"])), dict(s1.payload["scores"]), skipped, split)
    classes = e.classes
    closed, msp = decide.closed_set(t.logits, classes)
    kappa = res.kappa if cfg.cascade.use_kappa else None
    preds = decide.cascade(t.stage1, fit.threshold, closed, msp, kappa)
    defect = t.stage1 > fit.threshold
    labels, unk = t.labels, t.is_unknown
    modes = {m: {k: v for k, v in open_set_metrics(labels, preds[m], closed, -msp, unk, classes).items()
                 if k in MODE_METRICS + ("n_known", "n_unknown")} for m in MODES}
    stage2_all = open_set_metrics(labels, preds["ignore_no_defect"], closed, -msp, unk, classes)
    stage2 = {k: stage2_all[k] for k in RANKING + ("closed_set_accuracy",)}
    n_boot, seed = cfg.stats.bootstrap, cfg.project.seed
    intervals: JsonObject = {}
    for m in MODES:  # the rates' exact intervals need no replicates; the rest only with stats.bootstrap > 0
        ci = metric_intervals(labels, preds[m], closed, None, unk, classes, n_boot, seed)
        intervals[m] = {k: ci[k] for k in MODE_METRICS if k in ci}
    ci = metric_intervals(labels, preds["ignore_no_defect"], closed, -msp, unk, classes, n_boot, seed)
    intervals["stage2"] = {k: ci[k] for k in stage2 if k in ci}
    # the one-stage decisions on the same images, from the validated calibration, for the paired verdict
    one = decide.one_stage(cal.payload["scorer"].score_samples(t.x), res.tau, closed)
    verdict = _paired_verdict(t, one, preds, closed, classes, n_boot, seed)
    detection = float(np.mean(defect)) if len(defect) else float("nan")
    points = _stage1_points(fit, t.stage1)
    prov = artifacts.provenance(cfg, "cascade", CASCADE_ALGORITHM, key,
                                (*OSR_SECTIONS, *DETECTOR_SECTIONS, "cascade", "stats"),
                                {"detector": fit.artifact_id, "calibration": cal.id, "embeddings": emb.id,
                                 "stage1_scores": s1.id}, split=split,
                                weights={"patchcore": fit.provenance.input("weights")})
    counts = data_counts(e)
    counts["skipped"] = {**counts["skipped"], **skipped}
    stage1 = {"threshold": fit.threshold_summary, "unit": STAGE1_UNIT,
              "threshold_unit": fit.stats.get("unit_description") or fit.stats.get("unit", "crop"),
              "false_alarm_unit": fit.stats.get("unit", "crop"), "indomain_severstal": fit.indomain,
              "operating_points": points}
    record = CascadeResult(split, classes, fit.threshold, kappa, modes, stage2, detection, fit.false_alarm_rate,
                           intervals, verdict, counts["skipped"], stage1, counts, prov,
                           _rows(job, t, defect, preds, msp))
    return record.payload(), prov


def run_cascade(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> CascadeResult:
    """The cascade's decisions on the split's test images, their metrics and the paired verdict; cached."""
    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    fit = stage1_fit(job, reporter=reporter)
    cal = calibrated(job, split, reporter=reporter)
    emb = embedded(job, split, reporter=reporter)
    s1 = stage1_step(job, split, force, reporter)
    key = artifacts.cache_key("cascade", CASCADE_ALGORITHM, fit.artifact_id, cal.id, emb.id, s1.id,
                              cfg.section("cascade"), cfg.section("stats"), cfg.project.seed,
                              str(cfg.path(cfg.neu.root)))
    layout = job.layout
    step = artifacts.cached_step(layout.cascade_evaluation(split), key,
                                 lambda: _evaluate(job, split, fit, cal, emb, s1, key), force=force,
                                 on_wait=reporter.note)
    pred_path, metrics_path = layout.cascade_predictions(split), layout.metrics(split)
    record = CascadeResult.from_payload(step.payload, cached=step.cached, cached_stage1=s1.cached,
                                        predictions=str(pred_path), metrics_path=str(metrics_path))
    artifacts.write_outputs(pred_path, record.rows.csv(), metrics_path, "cascade", record.section(),
                            {"false_alarm_rate_normal_test_crops": "no usable normal test crops"},
                            others=lambda: cached_sections(layout, split))
    return record

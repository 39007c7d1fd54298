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

import csv
import io
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from osd import artifacts, decide, runtime
from osd.config import Config
from osd.decide import MODES, NO_DEFECT
from osd.errors import OsdWarning
from osd.metrics import RANKING, metric_intervals, open_set_metrics
from osd.osr.model import data_counts, test_arrays
from osd.pipeline.data import split_manifest
from osd.pipeline.detector import SECTIONS as DETECTOR_SECTIONS
from osd.pipeline.detector import fit_patchcore, load_detector, score_images
from osd.pipeline.osr import SECTIONS as OSR_SECTIONS
from osd.pipeline.osr import calibrated, calibration_result
from osd.pipeline.train import embedded
from osd.progress import Reporter, ensure

STAGE1_ALGORITHM = "stage1-scores/4"  # 4: a long image is scored per crop, as predict does; 3: relative paths
# 4: per-run p-values from the paired bootstrap replicates, stage-1 operating points; 3: a cached step; 2: stage 2
CASCADE_ALGORITHM = "cascade/4"
MODE_METRICS = ("known_acceptance", "unknown_rejection", "open_set_accuracy", "open_set_macro_f1")


@dataclass
class CascadeResult:
    split: str
    classes: list[str]
    threshold: float
    kappa: float | None
    modes: dict[str, dict[str, float]]
    stage2: dict[str, Any]
    stage1_detection_rate: float
    stage1_false_alarm_rate: float | None
    predictions: str
    metrics_path: str
    cached_stage1: bool
    cached: bool = False
    versus_one_stage: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage1_scores(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None
                  ) -> tuple[dict[str, float], dict[str, str], bool]:
    """PatchCore scores of the split's test images by path, the unreadable ones with reasons; cached."""
    step = stage1_step(cfg, split, force, reporter)
    return dict(step.payload["scores"]), dict(step.payload["skipped"]), step.cached


def stage1_step(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The stage-1 scores artifact of a split's test images (one rule with ``predict``: see score_images)."""
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    manifest = split_manifest(cfg, split)
    fit = fit_patchcore(cfg, reporter=reporter)
    key = artifacts.cache_key("stage1-scores", STAGE1_ALGORITHM, fit.artifact_id, manifest.fingerprint())
    path = artifacts.Layout(cfg.output_dir).cascade(split) / "stage1_scores.npz"

    @runtime.scoped
    def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        device = runtime.setup(cfg)
        detector, extractor, _ = load_detector(cfg, device, reporter)
        entries = manifest.test()
        scores, skipped = score_images(detector, extractor, [e.path for e in entries], cfg, device, reporter,
                                       f"stage 1, split {split}")
        by_path = {e.rel: float(v) for e, v in zip(entries, scores) if np.isfinite(v)}  # relative to neu.root
        skipped = {next((e.rel for e in entries if str(e.path) == k), k): v for k, v in skipped.items()}
        prov = artifacts.provenance(cfg, "stage 1 scores", STAGE1_ALGORITHM, key, DETECTOR_SECTIONS,
                                    {"detector": fit.artifact_id, "manifest": manifest.fingerprint()}, split=split)
        return {"scores": by_path, "skipped": skipped}, prov

    return artifacts.cached_step(path, key, compute, force=force, on_wait=reporter.note)


def _paired_verdict(t: dict[str, Any], one: np.ndarray, modes: dict[str, np.ndarray], closed: np.ndarray,
                    classes: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    from osd.metrics import EncodedResults, paired_difference

    unk = np.asarray(t["is_unknown"], dtype=bool)
    a = EncodedResults(t["labels"], one, closed, None, unk, classes)
    return {mode: paired_difference(a, EncodedResults(t["labels"], pred, closed, None, unk, classes), MODE_METRICS,
                                    unk, n_boot, seed) for mode, pred in modes.items()}


def _stage1_points(fit, defect_scores: np.ndarray) -> dict[str, Any]:
    """The stage-1 threshold at each acceptance target, set on the calibration normals in its unit."""
    from osd.osr.thresholds import operating_points

    unit = fit.stats.get("unit", "crop")
    return {"fitted_on": f"calibration normals (per {unit})", "accepted": f"held-out normal test {unit}s",
            "rejected": "the split's defect test images",
            "patchcore": operating_points(np.asarray(fit.calibration_scores), np.asarray(fit.test_scores),
                                          defect_scores)}


def _join(t: dict[str, Any], scores: dict[str, float], skipped: dict[str, str], split: str) -> dict[str, Any]:
    """The test arrays of the images with a stage-1 score, joined by path, never by position; an image
    without one (unreadable at stage 1) is left out, named in ``skipped``, with a warning."""
    keep = np.array([p in scores for p in t["paths"]], dtype=bool)
    missing = [p for p, k in zip(t["paths"], keep) if not k]
    if missing:
        for p in missing:
            skipped.setdefault(p, "no stage-1 score")
        warnings.warn(f"cascade, split {split}: {len(missing)} test image(s) without a stage-1 score left out: "
                      + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""), OsdWarning, stacklevel=3)
    t = {k: ([v[i] for i in np.flatnonzero(keep)] if isinstance(v, list) else v[keep]) for k, v in t.items()}
    t["stage1"] = np.array([scores[p] for p in t["paths"]], dtype=np.float64)
    return t


def _predictions_csv(cfg: Config, t: dict[str, Any], defect: np.ndarray, preds: dict[str, np.ndarray],
                     msp: np.ndarray) -> str:
    root = cfg.path(cfg.neu.root)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "true_label", "role", "stage1_score", "stage1_decision", "pred_strict",
                "pred_ignore_no_defect", "msp"])
    for i in range(len(t["stage1"])):
        w.writerow([str(root / t["paths"][i]), t["labels"][i], "unknown" if t["is_unknown"][i] else "known",
                    f"{t['stage1'][i]:.6g}", "defect" if defect[i] else NO_DEFECT, preds["strict"][i],
                    preds["ignore_no_defect"][i], f"{msp[i]:.6g}"])
    return buf.getvalue()


def _evaluate(cfg: Config, split: str, fit, cal: artifacts.Step, emb: artifacts.Step, s1: artifacts.Step,
              key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    res = calibration_result(cfg, split, cal)
    skipped = dict(s1.payload["skipped"])
    t = _join(test_arrays(emb.payload, list(cal.payload["blocks"])), dict(s1.payload["scores"]), skipped, split)
    classes = [str(c) for c in emb.payload["classes"]]
    closed, msp = decide.closed_set(t["logits"], classes)
    kappa = res.kappa if cfg.cascade.use_kappa else None
    preds = decide.cascade(t["stage1"], fit.threshold, closed, msp, kappa)
    defect = t["stage1"] > fit.threshold
    labels, unk = t["labels"], t["is_unknown"]
    modes = {m: {k: v for k, v in open_set_metrics(labels, preds[m], closed, -msp, unk, classes).items()
                 if k in MODE_METRICS + ("n_known", "n_unknown")} for m in MODES}
    stage2_all = open_set_metrics(labels, preds["ignore_no_defect"], closed, -msp, unk, classes)
    stage2 = {k: stage2_all[k] for k in RANKING + ("closed_set_accuracy",)}
    n_boot, seed = cfg.stats.bootstrap, cfg.project.seed
    intervals: dict[str, Any] = {}
    if n_boot:
        for m in MODES:
            ci = metric_intervals(labels, preds[m], closed, None, unk, classes, n_boot, seed)
            intervals[m] = {k: ci[k] for k in MODE_METRICS}
        ci = metric_intervals(labels, preds["ignore_no_defect"], closed, -msp, unk, classes, n_boot, seed)
        intervals["stage2"] = {k: ci[k] for k in stage2}
    # the one-stage decisions on the same images, from the validated calibration, for the paired verdict
    one = decide.one_stage(cal.payload["scorer"].score_samples(t["x"]), res.tau, closed)
    verdict = _paired_verdict(t, one, preds, closed, classes, n_boot, seed)
    detection = float(np.mean(defect)) if len(defect) else float("nan")
    points = _stage1_points(fit, t["stage1"])
    prov = artifacts.provenance(cfg, "cascade", CASCADE_ALGORITHM, key,
                                (*OSR_SECTIONS, *DETECTOR_SECTIONS, "cascade", "stats"),
                                {"detector": fit.artifact_id, "calibration": cal.id, "embeddings": emb.id,
                                 "stage1_scores": s1.id}, split=split,
                                weights={"patchcore": fit.provenance.get("inputs", {}).get("weights")})
    counts = data_counts(emb.payload)
    counts["skipped"] = {**counts["skipped"], **skipped}
    section = {
        "stage2": {**stage2, "intervals95": intervals.get("stage2", {}),
                   "score": "negative max softmax of the split's classifier (higher = more unknown); the same "
                            "score and values as the one-stage max-softmax baseline"},
        "strict": {**modes["strict"], "intervals95": intervals.get("strict", {})},
        "ignore_no_defect": {**modes["ignore_no_defect"], "intervals95": intervals.get("ignore_no_defect", {})},
        "kappa": kappa, "kappa_rule": "stage 2 says unknown when max softmax < kappa",
        "stage1": {"detection_rate_neu_test": detection, "false_alarm_rate_normal_test_crops": fit.false_alarm_rate,
                   "threshold": fit.threshold_summary,
                   "unit": "crop (an about-square image is one crop; a long one is cut into crops, its score is "
                           "their largest)",
                   "threshold_unit": fit.stats.get("unit_description") or fit.stats.get("unit", "crop"),
                   "false_alarm_unit": fit.stats.get("unit", "crop"),
                   "indomain_severstal": fit.indomain, "operating_points": points,
                   "score": "PatchCore: largest nearest-neighbour patch distance (higher = more anomalous)"},
        "versus_one_stage": {"difference": "one-stage minus cascade, same test images, paired stratified bootstrap",
                             **verdict},
        "data": counts,
        "provenance": prov,
    }
    result = {"classes": classes, "threshold": fit.threshold, "kappa": kappa, "modes": modes, "stage2": stage2,
              "detection": detection, "false_alarm": fit.false_alarm_rate, "verdict": verdict,
              "skipped": counts["skipped"]}
    return {"section": section, "result": result, "csv": _predictions_csv(cfg, t, defect, preds, msp)}, prov


def run_cascade(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> CascadeResult:
    """The cascade's decisions on the split's test images, their metrics and the paired verdict; cached."""
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    fit = fit_patchcore(cfg, reporter=reporter)
    cal = calibrated(cfg, split, reporter=reporter)
    emb = embedded(cfg, split, reporter=reporter)
    s1 = stage1_step(cfg, split, force, reporter)
    key = artifacts.cache_key("cascade", CASCADE_ALGORITHM, fit.artifact_id, cal.id, emb.id, s1.id,
                              cfg.section("cascade"), cfg.section("stats"), cfg.project.seed,
                              str(cfg.path(cfg.neu.root)))
    layout = artifacts.Layout(cfg.output_dir)
    step = artifacts.cached_step(layout.cascade(split) / "evaluation.npz", key,
                                 lambda: _evaluate(cfg, split, fit, cal, emb, s1, key), force=force,
                                 on_wait=reporter.note)
    pred_path, metrics_path = layout.cascade(split) / "predictions.csv", layout.metrics(split)
    artifacts.write_outputs(pred_path, step.payload["csv"], metrics_path, "cascade", step.payload["section"],
                            {"false_alarm_rate_normal_test_crops": "no usable normal test crops"})
    r = step.payload["result"]
    return CascadeResult(split, list(r["classes"]), r["threshold"], r["kappa"], r["modes"], r["stage2"],
                         r["detection"], r["false_alarm"], str(pred_path), str(metrics_path), s1.cached,
                         step.cached, r["verdict"], r["skipped"])

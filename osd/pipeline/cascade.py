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

from osd import artifacts, runtime
from osd.config import Config
from osd.errors import OsdWarning
from osd.metrics import RANKING, UNKNOWN, bootstrap, metric_intervals, open_set_metrics
from osd.pipeline.data import split_manifest
from osd.pipeline.detector import SECTIONS as DETECTOR_SECTIONS
from osd.pipeline.detector import fit_patchcore, load_detector, score_crops
from osd.pipeline.osr import SECTIONS as OSR_SECTIONS
from osd.pipeline.osr import calibrate, closed_predictions, data_counts, test_arrays
from osd.pipeline.train import load_embeddings
from osd.progress import Reporter

STAGE1_ALGORITHM = "stage1-scores/3"  # 3: per path relative to neu.root; 2: per path
CASCADE_ALGORITHM = "cascade/2"  # 2: stage-2 ranking metrics apart from the modes' decisions
NO_DEFECT = "no_defect"
MODES = ("strict", "ignore_no_defect")
MODE_METRICS = ("known_acceptance", "unknown_rejection", "open_set_accuracy", "open_set_macro_f1")


def cascade_decisions(stage1_defect: np.ndarray, closed: np.ndarray, msp: np.ndarray, kappa: float | None
                      ) -> dict[str, np.ndarray]:
    """Predicted labels per mode. ``kappa=None`` disables the confidence rejection."""
    stage2 = np.asarray(closed, dtype=object).copy()
    if kappa is not None:
        stage2[np.asarray(msp) < kappa] = UNKNOWN
    strict = np.where(np.asarray(stage1_defect, dtype=bool), stage2, NO_DEFECT)
    return {"strict": strict, "ignore_no_defect": stage2}


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
    versus_one_stage: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime.scoped
def stage1_scores(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None
                  ) -> tuple[dict[str, float], dict[str, str], bool]:
    """PatchCore scores of the split's test images by path, the unreadable ones with reasons; cached."""
    manifest = split_manifest(cfg, split)
    fit = fit_patchcore(cfg, reporter=reporter)
    key = artifacts.cache_key("stage1-scores", STAGE1_ALGORITHM, fit.artifact_id, manifest.fingerprint())
    path = artifacts.Layout(cfg.output_dir).cascade(split) / "stage1_scores.npz"
    payload = None if force else artifacts.load(path, key)
    if payload is not None:
        return dict(payload["scores"]), dict(payload["skipped"]), True
    device = runtime.setup(cfg)
    detector, extractor, _ = load_detector(cfg, device, reporter)
    entries = manifest.test()
    samples = [(e.path, None) for e in entries]
    scores, skipped = score_crops(detector, extractor, samples, cfg, device, reporter, f"stage 1, split {split}")
    by_path = {e.rel: float(s) for e, s in zip(entries, scores) if np.isfinite(s)}  # relative to neu.root
    payload = {"scores": by_path, "skipped": skipped}
    prov = artifacts.provenance(cfg, "stage 1 scores", STAGE1_ALGORITHM, key, DETECTOR_SECTIONS,
                                {"detector": fit.artifact_id, "manifest": manifest.fingerprint()}, split=split)
    artifacts.save(path, key, payload, prov)
    return by_path, skipped, False


def _paired_verdict(t: dict[str, Any], one: np.ndarray, modes: dict[str, np.ndarray], closed: np.ndarray,
                    classes: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    from osd.metrics import EncodedResults

    unk = np.asarray(t["is_unknown"], dtype=bool)
    a = EncodedResults(t["labels"], one, closed, None, unk, classes)
    out: dict[str, Any] = {}
    for mode, pred in modes.items():
        b = EncodedResults(t["labels"], pred, closed, None, unk, classes)

        def diff(idx: np.ndarray, b=b) -> dict[str, float]:
            ma, mb = a.metrics(idx, MODE_METRICS), b.metrics(idx, MODE_METRICS)
            return {k: ma[k] - mb[k] for k in MODE_METRICS}

        point = diff(np.arange(len(unk)))
        ci = bootstrap(diff, unk, n_boot, seed) if n_boot else {}
        out[mode] = {k: {"difference": point[k], "ci95": ci.get(k),
                         "excludes_zero": bool(ci and (ci[k][0] > 0 or ci[k][1] < 0))} for k in MODE_METRICS}
    return out


def run_cascade(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> CascadeResult:
    split = split.lower()
    fit = fit_patchcore(cfg, reporter=reporter)
    cal = calibrate(cfg, split, reporter=reporter)
    emb, emb_result = load_embeddings(cfg, split, reporter)
    t = test_arrays(emb, list(cal.blocks))
    scores, skipped, cached = stage1_scores(cfg, split, force, reporter)
    # Join by path, never by position: an image without a stage-1 score (unreadable at stage 1)
    # is left out of the cascade's evaluation, named in "skipped", with a warning.
    keep = np.array([p in scores for p in t["paths"]], dtype=bool)
    missing = [p for p, k in zip(t["paths"], keep) if not k]
    if missing:
        for p in missing:
            skipped.setdefault(p, "no stage-1 score")
        warnings.warn(f"cascade, split {split}: {len(missing)} test image(s) without a stage-1 score left out: "
                      + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""), OsdWarning, stacklevel=2)
    t = {k: ([v[i] for i in np.flatnonzero(keep)] if isinstance(v, list) else v[keep]) for k, v in t.items()}
    s1 = np.array([scores[p] for p in t["paths"]], dtype=np.float64)
    defect = s1 > fit.threshold
    classes, closed, msp = closed_predictions(emb, t)
    kappa = cal.kappa if cfg.cascade.use_kappa else None
    preds = cascade_decisions(defect, closed, msp, kappa)
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
    # the one-stage decisions on the same images, for the paired verdict
    payload = artifacts.load(artifacts.Layout(cfg.output_dir).calibration(split), None)
    dist = payload["scorer"].score_samples(t["x"])
    one = np.where(payload["tau"].predict(dist), UNKNOWN, closed)
    verdict = _paired_verdict(t, one, preds, closed, classes, n_boot, seed)
    detection = float(np.mean(defect)) if len(defect) else float("nan")
    layout = artifacts.Layout(cfg.output_dir)
    root = cfg.path(cfg.neu.root)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "true_label", "role", "stage1_score", "stage1_decision", "pred_strict",
                "pred_ignore_no_defect", "msp"])
    for i in range(len(s1)):
        w.writerow([str(root / t["paths"][i]), t["labels"][i], "unknown" if t["is_unknown"][i] else "known",
                    f"{s1[i]:.6g}",
                    "defect" if defect[i] else NO_DEFECT, preds["strict"][i], preds["ignore_no_defect"][i],
                    f"{msp[i]:.6g}"])
    pred_path = artifacts.write_text(layout.cascade(split) / "predictions.csv", buf.getvalue())
    prov = artifacts.provenance(cfg, "cascade", CASCADE_ALGORITHM, "", (*OSR_SECTIONS, *DETECTOR_SECTIONS, "cascade",
                                                                        "stats"),
                                {"detector": fit.artifact_id, "calibration": cal.artifact_id,
                                 "embeddings": emb_result.artifact_id}, split=split,
                                weights={"patchcore": fit.provenance.get("inputs", {}).get("weights")})
    counts = data_counts(emb)
    counts["skipped"] = {**counts["skipped"], **skipped}
    section = {
        "stage2": {**stage2, "intervals95": intervals.get("stage2", {}),
                   "score": "negative max softmax of the split's classifier (higher = more unknown); the same "
                            "score and values as the one-stage max-softmax baseline"},
        "strict": {**modes["strict"], "intervals95": intervals.get("strict", {})},
        "ignore_no_defect": {**modes["ignore_no_defect"], "intervals95": intervals.get("ignore_no_defect", {})},
        "kappa": kappa, "kappa_rule": "stage 2 says unknown when max softmax < kappa",
        "stage1": {"detection_rate_neu_test": detection, "false_alarm_rate_normal_test_crops": fit.false_alarm_rate,
                   "threshold": fit.threshold_summary, "unit": "crop (a NEU image is one crop)",
                   "indomain_severstal": fit.indomain,
                   "score": "PatchCore: largest nearest-neighbour patch distance (higher = more anomalous)"},
        "versus_one_stage": {"difference": "one-stage minus cascade, same test images, paired stratified bootstrap",
                             **verdict},
        "data": counts,
        "provenance": prov,
    }
    metrics_path = artifacts.update_metrics(layout.metrics(split), "cascade", section,
                                            {"false_alarm_rate_normal_test_crops": "no usable normal test crops"})
    return CascadeResult(split, classes, fit.threshold, kappa, modes, stage2, detection, fit.false_alarm_rate,
                         str(pred_path), str(metrics_path), cached, verdict, counts["skipped"])

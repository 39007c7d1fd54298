"""Step ``cascade``: PatchCore says defect / no defect, then the split's classifier names the class."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.metrics import UNKNOWN, open_set_metrics, softmax
from osd.pipeline.classifier import load_embeddings
from osd.pipeline.data import normal_data, split_manifest
from osd.pipeline.onestage import calibrate, test_arrays
from osd.pipeline.stage1 import fit_patchcore, load_detector, patchcore_key, score_samples
from osd.progress import Reporter

NO_DEFECT = "no_defect"
MODES = ("strict", "ignore_no_defect")


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
    stage1_detection_rate: float
    stage1_false_alarm_rate: float
    msp_auroc: float
    predictions: str
    metrics_path: str
    cached_stage1: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage1_scores(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None
                  ) -> tuple[np.ndarray, list[str], bool]:
    """PatchCore scores of the split's test images (known then unknown), cached per split."""
    from osd import runtime

    manifest = split_manifest(cfg, split)
    key = artifacts.cache_key("stage1-scores", patchcore_key(cfg, normal_data(cfg)), manifest.fingerprint())
    path = artifacts.Layout(cfg.output_dir).cascade(split) / "stage1_scores.joblib"
    payload = None if force else artifacts.load(path, key)
    if payload is not None:
        return payload["scores"], payload["paths"], True
    device = runtime.setup(cfg)
    bank, extractor, _ = load_detector(cfg, device, reporter)
    entries = manifest.test()
    samples = [(e.path, None) for e in entries]
    scores = score_samples(bank, extractor, samples, cfg, device, reporter, f"stage 1, split {split}")
    payload = {"scores": scores, "paths": [str(e.path) for e in entries]}
    artifacts.save(path, key, payload, cfg.to_dict())
    return scores, payload["paths"], False


def run_cascade(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> CascadeResult:
    split = split.lower()
    fit = fit_patchcore(cfg, reporter=reporter)
    cal = calibrate(cfg, split, reporter=reporter)
    emb = load_embeddings(cfg, split, reporter)
    t = test_arrays(emb)  # stage 2 reads logits only
    scores, score_paths, cached = stage1_scores(cfg, split, force, reporter)
    by_path = dict(zip(score_paths, scores))
    s1 = np.array([by_path.get(p, np.nan) for p in t["paths"]], dtype=np.float64)
    defect = s1 > fit.threshold
    classes = list(emb["classes"])
    probs = softmax(t["logits"])
    msp = probs.max(axis=1)
    closed = np.array([classes[i] for i in probs.argmax(axis=1)], dtype=object)
    kappa = cal.kappa if cfg.cascade.use_kappa else None
    preds = cascade_decisions(defect, closed, msp, kappa)
    modes = {m: open_set_metrics(t["labels"], preds[m], closed, -msp, t["is_unknown"], classes) for m in MODES}
    detection = float(np.mean(defect))
    layout = artifacts.Layout(cfg.output_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "true_label", "role", "stage1_score", "stage1_decision", "pred_strict",
                "pred_ignore_no_defect", "msp"])
    for i in range(len(s1)):
        w.writerow([t["paths"][i], t["labels"][i], "unknown" if t["is_unknown"][i] else "known", f"{s1[i]:.6g}",
                    "defect" if defect[i] else NO_DEFECT, preds["strict"][i], preds["ignore_no_defect"][i],
                    f"{msp[i]:.6g}"])
    pred_path = artifacts.write_text(layout.cascade(split) / "predictions.csv", buf.getvalue())
    section = {
        "strict": modes["strict"], "ignore_no_defect": modes["ignore_no_defect"],
        "stage1_detection_rate": detection, "stage1_false_alarm_rate": fit.false_alarm_rate,
        "stage1_threshold": fit.threshold, "kappa": kappa, "msp_auroc": modes["strict"]["auroc"],
        "score": "stage 2: negative max softmax (higher = more unknown); stage 1: patch distance, per image/crop",
        "stage1_unit": "crop (a NEU image is one crop)",
    }
    metrics_path = artifacts.update_metrics(layout.metrics(split), "cascade", section)
    return CascadeResult(split, classes, fit.threshold, kappa, modes, detection, fit.false_alarm_rate,
                         modes["strict"]["auroc"], str(pred_path), str(metrics_path), cached)

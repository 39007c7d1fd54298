"""Steps ``calibrate`` and ``osr``: Mahalanobis scorer, tau and kappa on validation, test metrics."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.metrics import UNKNOWN, open_set_metrics, softmax
from osd.pipeline.classifier import embed_key, load_embeddings
from osd.progress import Reporter

SCORE_SIGNS = {
    "penultimate": "higher = more unknown (smallest squared Mahalanobis distance to a known class mean)",
    "multilayer": "higher = more unknown (smallest squared Mahalanobis distance to a known class mean, per residual "
                  "stage, standardised on known validation images, averaged over the stages)",
}


def score_sign(features: str) -> str:
    return SCORE_SIGNS[features]


def _stats(part: dict[str, Any]) -> dict[str, np.ndarray]:
    return {"penultimate": part["embeddings"], **part.get("stages", {})}


def part_matrix(part: dict[str, Any], blocks: list[str]) -> np.ndarray:
    """The scorer's input for one stored partition (the penultimate embedding or stage statistics)."""
    from osd.osr.features import stack

    if len(part["labels"]) == 0:
        return np.zeros((0, 0), np.float32)
    return stack(_stats(part), blocks)[0]


@dataclass
class CalibrationResult:
    split: str
    tau: float
    kappa: float
    acceptance: float
    n_val: int
    val_accepted_tau: float
    val_accepted_kappa: float
    covariance: str
    normalize: str
    features: str
    blocks: list[str]
    cached: bool
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score_sign": score_sign(self.features)}


def calibrate(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> CalibrationResult:
    """Fit the scorer on train embeddings; tau and kappa accept ``osr.acceptance`` of known validation images."""
    from osd.osr.features import block_names, stack
    from osd.osr.mahalanobis import MultiBlockMahalanobis
    from osd.osr.thresholds import AcceptanceThreshold

    split = split.lower()
    emb = load_embeddings(cfg, split, reporter)
    key = artifacts.cache_key("calibrate", embed_key(cfg, split), cfg.section("osr"))
    layout = artifacts.Layout(cfg.output_dir)
    path = layout.osr(split) / "calibration.joblib"
    payload = None if force else artifacts.load(path, key)
    cached = payload is not None
    if payload is None:
        train, val = emb["train"], emb["val"]
        blocks = block_names(list(train.get("stages", {})), cfg.osr.features, cfg.osr.pooling)
        x_train, widths = stack(_stats(train), blocks)
        x_val = part_matrix(val, blocks)
        scorer = MultiBlockMahalanobis(tuple(widths), cfg.osr.covariance, cfg.osr.normalize).fit(
            x_train, np.asarray(train["labels"]), X_ref=x_val
        )
        tau = AcceptanceThreshold(cfg.osr.acceptance).fit(scorer.score_samples(x_val))
        msp_val = softmax(val["logits"]).max(axis=1)
        kap = AcceptanceThreshold(cfg.osr.acceptance).fit(-msp_val)  # same sign convention: -msp
        payload = {"scorer": scorer, "blocks": blocks, "tau": tau, "kappa_threshold": kap}
        artifacts.save(path, key, payload, cfg.to_dict())
        thresholds = {
            "tau": tau.threshold_, "kappa": -kap.threshold_, "acceptance": cfg.osr.acceptance,
            "n_val_images": tau.n_samples_, "val_accepted_tau": tau.accepted_fraction_,
            "val_accepted_kappa": kap.accepted_fraction_, "score_sign": score_sign(cfg.osr.features),
            "features": cfg.osr.features, "blocks": blocks,
            "tau_rule": "unknown when distance > tau", "kappa_rule": "unknown when max softmax < kappa",
        }
        artifacts.write_json(layout.osr(split) / "thresholds.json", thresholds)
    tau, kap = payload["tau"], payload["kappa_threshold"]
    return CalibrationResult(split, tau.threshold_, -kap.threshold_, cfg.osr.acceptance, tau.n_samples_,
                             tau.accepted_fraction_, kap.accepted_fraction_, cfg.osr.covariance, cfg.osr.normalize,
                             cfg.osr.features, list(payload["blocks"]), cached, str(path))


def load_calibration(cfg: Config, split: str, reporter: Reporter | None = None) -> dict[str, Any]:
    calibrate(cfg, split, reporter=reporter)
    return artifacts.load(artifacts.Layout(cfg.output_dir).osr(split) / "calibration.joblib", None)


@dataclass
class OsrResult:
    split: str
    classes: list[str]
    tau: float
    kappa: float
    osr: dict[str, float]
    msp: dict[str, float]
    predictions: str
    metrics_path: str
    cached: bool
    features: str = "penultimate"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score_sign": score_sign(self.features), "positive_class": "unknown"}


def test_arrays(emb: dict[str, Any], blocks: list[str] | None = None) -> dict[str, Any]:
    """Known test then unknown test, concatenated; with ``blocks``, ``x`` is the scorer's input."""
    tk, tu = emb["test_known"], emb["test_unknown"]
    out: dict[str, Any] = {}
    if blocks is not None:
        parts = [m for m in (part_matrix(tk, blocks), part_matrix(tu, blocks)) if len(m)]
        out["x"] = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return {
        **out,
        "logits": np.concatenate([tk["logits"], tu["logits"]]),
        "labels": list(tk["labels"]) + list(tu["labels"]),
        "paths": list(tk["paths"]) + list(tu["paths"]),
        "is_unknown": np.array([False] * len(tk["labels"]) + [True] * len(tu["labels"])),
    }


def evaluate(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> OsrResult:
    """One-stage decision (unknown when distance > tau, else arg-max class) and its metrics."""
    split = split.lower()
    cal = calibrate(cfg, split, force=force, reporter=reporter)
    # calibrate() has just brought both artifacts up to date; read them once instead of walking
    # the cached chain (which reloads the classifier checkpoint) twice more.
    layout = artifacts.Layout(cfg.output_dir)
    emb = artifacts.load(layout.embeddings(split) / "embeddings.joblib", None)
    payload = artifacts.load(Path(cal.path), None)
    scorer, tau = payload["scorer"], payload["tau"]
    classes = list(emb["classes"])
    t = test_arrays(emb, list(payload["blocks"]))
    dist = scorer.score_samples(t["x"])
    probs = softmax(t["logits"])
    msp = probs.max(axis=1)
    closed = np.array([classes[i] for i in probs.argmax(axis=1)], dtype=object)
    pred = np.where(tau.predict(dist), UNKNOWN, closed)
    pred_msp = np.where(msp < cal.kappa, UNKNOWN, closed)
    m_osr = open_set_metrics(t["labels"], pred, closed, dist, t["is_unknown"], classes)
    m_msp = open_set_metrics(t["labels"], pred_msp, closed, -msp, t["is_unknown"], classes)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "true_label", "role", "pred_label", "distance", "msp", "closed_label", "pred_label_msp"])
    for i in range(len(dist)):
        role = "unknown" if t["is_unknown"][i] else "known"
        w.writerow([t["paths"][i], t["labels"][i], role, pred[i], f"{dist[i]:.6g}", f"{msp[i]:.6g}", closed[i],
                    pred_msp[i]])
    pred_path = artifacts.write_text(layout.osr(split) / "predictions.csv", buf.getvalue())
    osr_section = {**m_osr, "tau": cal.tau, "score_sign": score_sign(cal.features), "positive_class": "unknown",
                   "features": cal.features, "blocks": cal.blocks,
                   "msp": {**m_msp, "kappa": cal.kappa, "score": "negative max softmax"}}
    metrics_path = artifacts.update_metrics(layout.metrics(split), "osr", osr_section)
    return OsrResult(split, classes, cal.tau, cal.kappa, m_osr, m_msp, str(pred_path), str(metrics_path), cal.cached,
                     cal.features)

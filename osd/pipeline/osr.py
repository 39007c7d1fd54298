"""Steps ``calibrate`` and ``osr``: Mahalanobis scorer, tau and kappa on validation, test metrics.

The headline is the configured method (by default the study's locked method: Mahalanobis on the
penultimate-layer embedding). The other feature choices are computed from the same cached
embeddings, each with its own tau on validation images, and reported under ``variants``: they
never replace the headline.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.errors import OsdWarning
from osd.metrics import UNKNOWN, metric_intervals, open_set_metrics, softmax
from osd.pipeline.train import TRAIN_SECTIONS, load_embeddings
from osd.progress import Reporter

CALIBRATE_ALGORITHM = "calibrate/4"  # 4: records the features actually scored; 3: order-statistic thresholds
EVALUATE_ALGORITHM = "osr/3"  # 3: variant selection without test data
SECTIONS = (*TRAIN_SECTIONS, "osr")
# (features, pooling) of the variants reported beside the configured method
VARIANTS = {"penultimate": ("penultimate", "mean"), "multilayer": ("multilayer", "mean"),
            "multilayer_mean_std": ("multilayer", "mean_std")}

SCORE_SIGNS = {
    "penultimate": "higher = more unknown (smallest squared Mahalanobis distance to a known class mean, "
                   "penultimate-layer embedding)",
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


def fit_scorer(emb: dict[str, Any], features: str, pooling: str, covariance: str, normalize: str,
               acceptance: float):
    """(blocks, fitted scorer, tau calibrator) from train and validation partitions only."""
    from osd.osr.features import block_names, stack
    from osd.osr.mahalanobis import MultiBlockMahalanobis
    from osd.osr.thresholds import AcceptanceThreshold

    train, val = emb["train"], emb["val"]
    blocks = block_names(list(train.get("stages", {})), features, pooling)
    x_train, widths = stack(_stats(train), blocks)
    x_val = part_matrix(val, blocks)
    scorer = MultiBlockMahalanobis(tuple(widths), covariance, normalize).fit(
        x_train, np.asarray(train["labels"]), X_ref=x_val)
    tau = AcceptanceThreshold(acceptance, "tau (known validation images)").fit(scorer.score_samples(x_val))
    return blocks, scorer, tau


def select_variant(emb: dict[str, Any], covariance: str, normalize: str):
    """Every feature variant's pseudo-open-set AUROC on training + validation images, and the best one."""
    from osd.osr.features import block_names, stack
    from osd.osr.selection import VariantSelection, leave_one_class_out_auroc

    train, val = emb["train"], emb["val"]
    sel, seen = VariantSelection(), set()
    for name, (features, pooling) in VARIANTS.items():
        blocks = block_names(list(train.get("stages", {})), features, pooling)
        if tuple(blocks) in seen:  # a model without stages: every variant is the penultimate one
            continue
        seen.add(tuple(blocks))
        x_train, widths = stack(_stats(train), blocks)
        sel.add(name, leave_one_class_out_auroc(x_train, np.asarray(train["labels"]), part_matrix(val, blocks),
                                                np.asarray(val["labels"]), tuple(widths), covariance, normalize))
    return sel.select(list(VARIANTS))


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
    tau_summary: dict[str, Any] = field(default_factory=dict)
    kappa_summary: dict[str, Any] = field(default_factory=dict)
    artifact_id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score_sign": score_sign(self.features)}


def calibrate(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> CalibrationResult:
    """Fit the scorer on train embeddings; tau and kappa accept ``osr.acceptance`` of known validation images."""
    from osd.osr.thresholds import AcceptanceThreshold

    split = split.lower()
    emb, emb_result = load_embeddings(cfg, split, reporter)
    key = artifacts.cache_key("calibrate", CALIBRATE_ALGORITHM, emb_result.artifact_id, cfg.section("osr"))
    layout = artifacts.Layout(cfg.output_dir)
    path = layout.calibration(split)
    record = None if force else artifacts.load_record(path, key)
    cached = record is not None
    if record is None:
        o = cfg.osr
        blocks, scorer, tau = fit_scorer(emb, o.features, o.pooling, o.covariance, o.normalize, o.acceptance)
        used = "penultimate" if blocks == ["penultimate"] else o.features
        if used != o.features:
            warnings.warn(f"osr.features = {o.features!r}: the classifier exposes no stage features, so the "
                          "penultimate embedding alone was scored (recorded as features 'penultimate')", OsdWarning,
                          stacklevel=2)
        msp_val = softmax(emb["val"]["logits"]).max(axis=1)
        kap = AcceptanceThreshold(o.acceptance, "kappa (known validation images)").fit(-msp_val)  # sign: -msp
        payload = {"scorer": scorer, "blocks": blocks, "tau": tau, "kappa_threshold": kap, "features": used}
        prov = artifacts.provenance(cfg, "calibrate", CALIBRATE_ALGORITHM, key, SECTIONS,
                                    {"embeddings": emb_result.artifact_id}, split=split)
        record = {"id": artifacts.save(path, key, payload, prov), "provenance": prov, "payload": payload}
        thresholds = {
            "tau": tau.summary(), "kappa": {**kap.summary(), "threshold": -kap.threshold_,
                                            "note": "fitted on -max softmax; kappa = -threshold"},
            "score_sign": score_sign(used), "features": used, "features_requested": o.features, "blocks": blocks,
            "tau_rule": "unknown when distance > tau", "kappa_rule": "unknown when max softmax < kappa",
            "provenance": {**prov, "artifact_id": record["id"]},
        }
        artifacts.write_json(layout.osr(split) / "thresholds.json", thresholds)
    payload = record["payload"]
    tau, kap = payload["tau"], payload["kappa_threshold"]
    prov = {**record["provenance"], "artifact_id": record["id"]}
    features = payload.get("features") or prov.get("config", {}).get("osr.features", cfg.osr.features)
    return CalibrationResult(split, tau.threshold_, -kap.threshold_, tau.acceptance, tau.n_samples_,
                             tau.accepted_fraction_, kap.accepted_fraction_, cfg.osr.covariance, cfg.osr.normalize,
                             features, list(payload["blocks"]), cached, str(path), tau.summary(),
                             {**kap.summary(), "threshold": -kap.threshold_}, record["id"], prov)


def load_calibration(cfg: Config, split: str, reporter: Reporter | None = None) -> dict[str, Any]:
    result = calibrate(cfg, split, reporter=reporter)
    return artifacts.load(artifacts.Layout(cfg.output_dir).calibration(split), None) | {"result": result}


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
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)  # variant chosen without test data (reported only)

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


def data_counts(emb: dict[str, Any]) -> dict[str, Any]:
    """Images per partition that entered the result, and the ones skipped (with the reason)."""
    from osd.pipeline.train import PARTS

    return {"images": {p: len(emb[p]["labels"]) for p in PARTS}, "skipped": dict(emb.get("skipped", {}))}


def closed_predictions(emb: dict[str, Any], t: dict[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    classes = [str(c) for c in emb["classes"]]
    probs = softmax(t["logits"])
    closed = np.array([classes[i] for i in probs.argmax(axis=1)], dtype=object)
    return classes, closed, probs.max(axis=1)


def evaluate(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> OsrResult:
    """One-stage decision (unknown when distance > tau, else arg-max class), its metrics and the variants'."""
    split = split.lower()
    cal = calibrate(cfg, split, force=force, reporter=reporter)
    emb, emb_result = load_embeddings(cfg, split, reporter)
    layout = artifacts.Layout(cfg.output_dir)
    payload = artifacts.load(layout.calibration(split), None)
    scorer, tau = payload["scorer"], payload["tau"]
    t = test_arrays(emb, list(payload["blocks"]))
    classes, closed, msp = closed_predictions(emb, t)
    dist = scorer.score_samples(t["x"])
    pred = np.where(tau.predict(dist), UNKNOWN, closed)
    pred_msp = np.where(msp < cal.kappa, UNKNOWN, closed)
    m_osr = open_set_metrics(t["labels"], pred, closed, dist, t["is_unknown"], classes)
    m_msp = open_set_metrics(t["labels"], pred_msp, closed, -msp, t["is_unknown"], classes)
    n_boot, seed = cfg.stats.bootstrap, cfg.project.seed
    intervals = {}
    if n_boot:
        intervals["osr"] = metric_intervals(t["labels"], pred, closed, dist, t["is_unknown"], classes, n_boot, seed)
        intervals["msp"] = metric_intervals(t["labels"], pred_msp, closed, -msp, t["is_unknown"], classes, n_boot,
                                            seed)
    o = cfg.osr
    variants: dict[str, dict[str, Any]] = {}
    for name, (features, pooling) in VARIANTS.items():
        if (features, pooling if features != "penultimate" else "mean") == (
                o.features, o.pooling if o.features != "penultimate" else "mean"):
            continue
        blocks, v_scorer, v_tau = fit_scorer(emb, features, pooling, o.covariance, o.normalize, o.acceptance)
        if blocks == list(payload["blocks"]):
            continue  # the same blocks as the headline (e.g. a model without residual stages)
        t_v = test_arrays(emb, blocks)
        d_v = v_scorer.score_samples(t_v["x"])
        p_v = np.where(v_tau.predict(d_v), UNKNOWN, closed)
        variants[name] = {**open_set_metrics(t["labels"], p_v, closed, d_v, t["is_unknown"], classes),
                          "tau": v_tau.threshold_, "features": features, "pooling": pooling, "blocks": blocks,
                          "role": "variant: reported beside the locked method, never used to choose it"}
    selection = select_variant(emb, o.covariance, o.normalize).to_dict()
    root = cfg.path(cfg.neu.root)  # artifacts hold paths relative to it; the CSV shows where they are now
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "true_label", "role", "pred_label", "distance", "msp", "closed_label", "pred_label_msp"])
    for i in range(len(dist)):
        role = "unknown" if t["is_unknown"][i] else "known"
        w.writerow([str(root / t["paths"][i]), t["labels"][i], role, pred[i], f"{dist[i]:.6g}", f"{msp[i]:.6g}",
                    closed[i],
                    pred_msp[i]])
    pred_path = artifacts.write_text(layout.osr(split) / "predictions.csv", buf.getvalue())
    prov = artifacts.provenance(cfg, "osr", EVALUATE_ALGORITHM, "", (*SECTIONS, "stats"),
                                {"calibration": cal.artifact_id, "embeddings": emb_result.artifact_id,
                                 "classifier": emb_result.provenance.get("inputs", {}).get("classifier")},
                                split=split)
    train_prov = artifacts.peek(layout.model(split)) or {}
    prov["weights"] = train_prov.get("provenance", {}).get("inputs", {}).get("weights")
    osr_section = {
        **m_osr, "intervals95": intervals.get("osr", {}), "tau": cal.tau, "thresholds": {"tau": cal.tau_summary,
                                                                                           "kappa": cal.kappa_summary},
        "score": score_sign(cal.features), "positive_class": "unknown", "features": cal.features,
        "blocks": cal.blocks, "method": "locked (penultimate Mahalanobis)" if cal.features == "penultimate"
        else f"configured variant ({cal.features}); the locked method is under variants",
        "msp": {**m_msp, "intervals95": intervals.get("msp", {}), "kappa": cal.kappa,
                "score": "negative max softmax of the classifier (higher = more unknown)"},
        "variants": variants, "selection": selection, "data": {**data_counts(emb), "known": list(classes),
                                       "unknown": sorted({str(x) for x in emb["test_unknown"]["labels"]})},
        "provenance": prov,
    }
    metrics_path = artifacts.update_metrics(layout.metrics(split), "osr", osr_section)
    return OsrResult(split, classes, cal.tau, cal.kappa, m_osr, m_msp, str(pred_path), str(metrics_path), cal.cached,
                     cal.features, variants, intervals, selection)

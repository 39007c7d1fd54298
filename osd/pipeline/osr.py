"""Steps ``calibrate`` and ``osr``: Mahalanobis scorer, tau and kappa on validation, test metrics.

The headline is the configured method (by default the study's locked method: Mahalanobis on the
penultimate-layer embedding). The other feature choices are computed from the same cached
embeddings, each with its own tau on validation images, and reported under ``variants``: they
never replace the headline. The model lives in :mod:`osd.osr.model`, the decision rule in
:mod:`osd.decide`; this module orchestrates them through cached steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from osd import artifacts, decide
from osd.errors import OsdWarning
from osd.metrics import metric_intervals, open_set_metrics
from osd.osr.embeddings import Embeddings
from osd.osr.model import VARIANTS, EvalArrays, data_counts, fit_scorer, osr_settings, score_sign, select_variant, test_arrays
from osd.pipeline.job import Job
from osd.pipeline.train import TRAIN_SECTIONS, embedded, trained
from osd.progress import Reporter, ensure
from osd.records import OsrResult, Record, Rows, cached_sections
from osd.types import JsonObject

CALIBRATE_ALGORITHM = "calibrate/5"  # 5: kappa stored as neg_kappa; 4: features scored; 3: order statistic
# 8: the payload is the OsrResult record
# 7: p-values of the paired baseline comparisons, operating points of tau and kappa; 6: kNN k and ViM subspace
# follow the training size; 5: baselines; 4: cached step
# 10: FPR@95 exact, no zero-width bootstrap interval; 9: single rates with exact Clopper-Pearson intervals
# 11: rmds on the locked method's shrinkage covariance (pytorch-ood's RMD, singular at 1280-d, before)
EVALUATE_ALGORITHM = "osr/12"  # 12: AUROC and FPR@95 intervals right at their edges (issue 48)
SECTIONS = (*TRAIN_SECTIONS, "osr")


@dataclass(frozen=True)
class CalibrationResult(Record):
    """The calibrate step's record: tau and kappa with their summaries, a view of ``calibration.npz``."""

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
    tau_summary: JsonObject = field(default_factory=dict)
    kappa_summary: JsonObject = field(default_factory=dict)
    artifact_id: str = ""
    provenance: artifacts.Provenance = field(default_factory=artifacts.Provenance.empty)

    def to_dict(self) -> JsonObject:
        return {**super().to_dict(), "score_sign": score_sign(self.features)}


def _calibrate(job: Job, split: str, emb: artifacts.Step, key: str) -> tuple[dict[str, Any], artifacts.Provenance]:
    from osd.osr.thresholds import AcceptanceThreshold, warn_small_samples

    cfg = job.cfg
    o = cfg.osr
    e = Embeddings.from_payload(emb.payload)
    blocks, scorer, tau = fit_scorer(e, o.features, o.pooling, o.covariance, o.normalize, o.acceptance, quiet=True)
    used = "penultimate" if blocks == ["penultimate"] else o.features
    if used != o.features:
        warnings.warn(f"osr.features = {o.features!r}: the classifier exposes no stage features, so the "
                      "penultimate embedding alone was scored (recorded as features 'penultimate')", OsdWarning,
                      stacklevel=2)
    msp_val = decide.softmax(e.threshold.logits).max(axis=1)
    # AcceptanceThreshold rejects scores above its threshold: it is fitted on -msp, so kappa = -threshold
    neg_kappa = AcceptanceThreshold(o.acceptance, "kappa (known validation images)", quiet=True).fit(-msp_val)
    warn_small_samples({"tau": tau, "kappa": neg_kappa}, f"split {split}")
    payload = {"scorer": scorer, "blocks": blocks, "tau": tau, "neg_kappa": neg_kappa, "features": used}
    prov = artifacts.provenance(cfg, "calibrate", CALIBRATE_ALGORITHM, key, SECTIONS, {"embeddings": emb.id},
                                split=split)
    return payload, prov


def calibrated(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The split's calibration artifact (scorer, tau, kappa), from its embeddings artifact."""
    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    emb = embedded(job, split, reporter=reporter)
    key = artifacts.cache_key("calibrate", CALIBRATE_ALGORITHM, emb.id, osr_settings(cfg.section("osr")))
    layout = job.layout
    step = artifacts.cached_step(layout.calibration(split), key, lambda: _calibrate(job, split, emb, key),
                                 force=force, on_wait=reporter.note)
    if not step.cached:
        p = step.payload
        kappa = -p["neg_kappa"].threshold_
        artifacts.write_json(layout.thresholds(split), {
            "tau": p["tau"].summary(), "kappa": {**p["neg_kappa"].summary(), "threshold": kappa,
                                                 "note": "fitted on -max softmax; kappa = -threshold"},
            "score_sign": score_sign(p["features"]), "features": p["features"], "features_requested": cfg.osr.features,
            "blocks": p["blocks"], "tau_rule": "unknown when distance > tau",
            "kappa_rule": "unknown when max softmax < kappa", "provenance": step.lineage})
    return step


def calibration_result(job: Job, split: str, step: artifacts.Step) -> CalibrationResult:
    cfg = job.cfg
    p = step.payload
    tau, neg = p["tau"], p["neg_kappa"]
    features = p.get("features") or step.provenance.config.get("osr.features", cfg.osr.features)
    return CalibrationResult(split, tau.threshold_, -neg.threshold_, tau.acceptance, tau.n_samples_,
                             tau.accepted_fraction_, neg.accepted_fraction_, cfg.osr.covariance, cfg.osr.normalize,
                             features, list(p["blocks"]), step.cached, str(step.path), tau.summary(),
                             {**neg.summary(), "threshold": -neg.threshold_}, step.id, step.lineage)


def calibrate(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> CalibrationResult:
    """Fit the scorer on train embeddings; tau and kappa accept ``osr.acceptance`` of known validation images."""
    cfg = job.cfg
    split = cfg.split_name(split)
    return calibration_result(job, split, calibrated(job, split, force, reporter))


def _variants(job: Job, emb: Embeddings, headline_blocks: list[str], closed: np.ndarray,
              t: EvalArrays, classes: list[str]) -> dict[str, JsonObject]:
    """The feature variants beside the configured method, each with its own tau on validation images."""
    cfg = job.cfg
    o = cfg.osr
    variants: dict[str, JsonObject] = {}
    for name, (features, pooling) in VARIANTS.items():
        if (features, pooling if features != "penultimate" else "mean") == (
                o.features, o.pooling if o.features != "penultimate" else "mean"):
            continue
        # the variants' taus share tau's validation images: calibrate has said how few they are
        blocks, v_scorer, v_tau = fit_scorer(emb, features, pooling, o.covariance, o.normalize, o.acceptance,
                                             quiet=True)
        if blocks == headline_blocks:
            continue  # the same blocks as the headline (e.g. a model without residual stages)
        d_v = v_scorer.score_samples(test_arrays(emb, blocks).x)
        p_v = decide.one_stage(d_v, v_tau.threshold_, closed)
        variants[name] = {**open_set_metrics(t.labels, p_v, closed, d_v, t.is_unknown, classes),
                          "tau": v_tau.threshold_, "features": features, "pooling": pooling, "blocks": blocks,
                          "role": "variant: reported beside the locked method, never used to choose it"}
    return variants


def _baselines(job: Job, emb: Embeddings, head: tuple[np.ndarray, np.ndarray], t: EvalArrays,
               closed: np.ndarray, classes: list[str], locked: tuple[np.ndarray, np.ndarray],
               odin: dict[str, Any] | None = None, split: str = "") -> dict[str, JsonObject]:
    """Each configured baseline: fitted on training images, its own threshold on the threshold images
    (the same order statistic as tau), its test metrics and intervals, and the paired difference of
    the locked method minus it (AUROC and open-set accuracy). ``odin``: the ODIN step's scores per
    part, in the embeddings' row order (when ``odin`` is among the baselines)."""
    from osd.errors import ArtifactError
    from osd.metrics import EncodedResults, paired_difference
    from osd.osr.baselines import HUMAN, SCORES, fit_baseline
    from osd.osr.thresholds import AcceptanceThreshold, warn_small_samples

    cfg = job.cfg
    if odin is not None:  # joined row for row (the ODIN step scored the embeddings' own images, in order)
        from osd.pipeline.odin import ODIN_PARTS

        joined = {}
        for part in ODIN_PARTS:
            scores = np.asarray(odin[part], dtype=np.float64)
            if len(scores) != len(emb[part]) or not np.isfinite(scores).all():
                raise ArtifactError(f"the ODIN scores of {part} do not match its embeddings (an image unreadable "
                                    "since it was embedded?)", rebuild="osr --force")
            joined[part] = emb[part].with_odin(scores)
        emb = emb.with_parts(**joined)
    tk, tu = emb.test_known, emb.test_unknown
    n_boot, seed = cfg.stats.bootstrap, cfg.project.seed
    unk = np.asarray(t.is_unknown, dtype=bool)
    lock = EncodedResults(t.labels, locked[1], closed, locked[0], unk, classes)
    keys = ("auroc", "open_set_accuracy")
    out: dict[str, JsonObject] = {}
    fitted: dict[str, AcceptanceThreshold] = {}
    for name in dict.fromkeys(cfg.osr.baselines):
        scorer, reads = fit_baseline(name, emb.train, head)
        thr = AcceptanceThreshold(cfg.osr.acceptance, f"{name} threshold (known validation images)", quiet=True).fit(
            scorer.score_samples(emb.threshold.reads(reads)))
        fitted[HUMAN.get(name, name)] = thr
        parts = [p.reads(reads) for p in (tk, tu) if len(p)]
        score = scorer.score_samples(np.concatenate(parts))
        pred = decide.one_stage(score, thr.threshold_, closed)
        metrics = open_set_metrics(t.labels, pred, closed, score, unk, classes)
        ci = metric_intervals(t.labels, pred, closed, score, unk, classes, n_boot, seed)
        other = EncodedResults(t.labels, pred, closed, score, unk, classes)
        out[name] = {**metrics, "intervals95": ci, "threshold": thr.summary(), "score": SCORES[name],
                     "reads": reads, "role": "baseline: reported beside the locked method, never used to choose it",
                     "locked_minus_baseline": paired_difference(lock, other, keys, unk, n_boot, seed)}
    warn_small_samples(fitted, f"{split + ': ' if split else ''}the baselines' thresholds (the validation images that "
                               "set tau)")
    return out


def _operating_points(emb: Embeddings, scorer, blocks: list[str], classes: list[str], dist: np.ndarray,
                      msp: np.ndarray, unk: np.ndarray) -> JsonObject:
    """tau and kappa at each acceptance target, set on the threshold images (known validation), and
    what each does on the test images: knowns accepted, unknowns rejected."""
    from osd.osr.model import part_matrix
    from osd.osr.thresholds import operating_points

    val = emb.threshold
    val_dist = scorer.score_samples(part_matrix(val, blocks)) if len(val) else np.zeros(0)
    val_msp = decide.closed_set(val.logits, classes)[1] if len(val) else np.zeros(0)
    return {"fitted_on": "known validation images (the threshold share)", "accepted": "test knowns",
            "rejected": "test unknowns",
            "tau": operating_points(val_dist, dist[~unk], dist[unk]),
            "kappa": operating_points(-val_msp, -msp[~unk], -msp[unk])}


PREDICTION_HEADER = ("path", "true_label", "role", "pred_label", "distance", "msp", "closed_label", "pred_label_msp")


def _rows(job: Job, t: EvalArrays, pred, dist, msp, closed, pred_msp) -> Rows:
    cfg = job.cfg
    root = cfg.path(cfg.neu.root)  # artifacts hold paths relative to it; the rows show where they are now
    return Rows.of(PREDICTION_HEADER, ([str(root / t.paths[i]), t.labels[i],
                                        "unknown" if t.is_unknown[i] else "known", pred[i], float(dist[i]),
                                        float(msp[i]), closed[i], pred_msp[i]] for i in range(len(dist))))


def _evaluate(job: Job, split: str, cal: artifacts.Step, emb: artifacts.Step, key: str,
              odin: artifacts.Step | None = None) -> tuple[dict[str, Any], artifacts.Provenance]:
    """Collect the test arrays, decide, compute metrics and intervals; the section and the CSV to write."""
    cfg = job.cfg
    res = calibration_result(job, split, cal)
    scorer, blocks = cal.payload["scorer"], list(cal.payload["blocks"])
    e = Embeddings.from_payload(emb.payload)
    t = test_arrays(e, blocks)
    classes = e.classes
    closed, msp = decide.closed_set(t.logits, classes)
    dist = scorer.score_samples(t.x)
    pred = decide.one_stage(dist, res.tau, closed)
    pred_msp = decide.confidence(msp, res.kappa, closed)
    m_osr = open_set_metrics(t.labels, pred, closed, dist, t.is_unknown, classes)
    m_msp = open_set_metrics(t.labels, pred_msp, closed, -msp, t.is_unknown, classes)
    n_boot, seed = cfg.stats.bootstrap, cfg.project.seed
    # the rates' exact intervals need no replicates; the rest only with stats.bootstrap > 0
    intervals = {"osr": metric_intervals(t.labels, pred, closed, dist, t.is_unknown, classes, n_boot, seed),
                 "msp": metric_intervals(t.labels, pred_msp, closed, -msp, t.is_unknown, classes, n_boot, seed)}
    variants = _variants(job, e, blocks, closed, t, classes)
    state = trained(job, split).payload["state_dict"]
    head = (np.asarray(state["head.weight"], dtype=np.float64), np.asarray(state["head.bias"], dtype=np.float64))
    baselines = _baselines(job, e, head, t, closed, classes, (dist, pred), odin and odin.payload, f"split {split}")
    selection = select_variant(e, cfg.osr.covariance, cfg.osr.normalize).to_dict()
    points = _operating_points(e, scorer, blocks, classes, dist, msp, np.asarray(t.is_unknown, bool))
    prov = artifacts.provenance(cfg, "osr", EVALUATE_ALGORITHM, key, (*SECTIONS, "stats"),
                                {"calibration": cal.id, "embeddings": emb.id,
                                 "classifier": emb.provenance.input("classifier"),
                                 **({"odin": odin.id} if odin else {})}, split=split)
    prov = prov.adding(weights=trained(job, split).provenance.input("weights"))
    data = {**data_counts(e), "known": list(classes), "unknown": sorted(set(e.test_unknown.labels))}
    record = OsrResult(split, classes, res.tau, res.kappa, m_osr, m_msp, res.features, res.blocks, variants, intervals,
                       selection, baselines, {"tau": res.tau_summary, "kappa": res.kappa_summary}, points, data, prov,
                       _rows(job, t, pred, dist, msp, closed, pred_msp))
    return record.payload(), prov


def evaluate(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> OsrResult:
    """One-stage decision (unknown when distance > tau, else arg-max class), its metrics and the variants'.

    A cached step keyed on the calibration and embeddings artifacts, the osr and stats settings and
    the evaluation's algorithm version: a repeated call only reads.
    """
    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    cal = calibrated(job, split, force=force, reporter=reporter)
    emb = embedded(job, split, reporter=reporter)
    odin = None
    if "odin" in cfg.osr.baselines:
        from osd.pipeline.odin import odin_scored

        odin = odin_scored(job, split, force=force, reporter=reporter)
    key = artifacts.cache_key("osr", EVALUATE_ALGORITHM, cal.id, emb.id, cfg.section("osr"), cfg.section("stats"),
                              cfg.project.seed, str(cfg.path(cfg.neu.root)),
                              *([odin.id] if odin else []))
    layout = job.layout
    step = artifacts.cached_step(layout.osr_evaluation(split), key,
                                 lambda: _evaluate(job, split, cal, emb, key, odin), force=force,
                                 on_wait=reporter.note)
    pred_path, metrics_path = layout.osr_predictions(split), layout.metrics(split)
    record = OsrResult.from_payload(step.payload, cached=step.cached, predictions=str(pred_path),
                                    metrics_path=str(metrics_path))
    artifacts.write_outputs(pred_path, record.rows.csv(), metrics_path, "osr", record.section(),
                            others=lambda: cached_sections(layout, split))
    return record

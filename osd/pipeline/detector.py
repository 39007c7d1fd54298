"""Step ``patchcore fit``: the project's settings resolved into the library's inputs
(:mod:`osd.patchcore.fit`), the fit cached under its key, its readable files written beside it.

The threshold is set in the unit it is applied in (:func:`stage1_unit`; the reasons are in
:mod:`osd.patchcore.fit`): a crop for normal images from another source (NEU + Severstal), an
image for the line's own normal images and for the detection study. Scores are never paired with
images by position: every scored crop carries its sample id (``path`` or ``path#x0,y0,x1,y1``), and
a crop that cannot be read is reported by id, not dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.data.splits import rng_for
from osd.errors import ArtifactError
from osd.patchcore.fit import CROP, IMAGE, DefectParts, NormalParts, Stage1Plan, auroc_interval, indomain_rates
from osd.patchcore.stage1 import SPEC_SETTINGS, Stage1Spec
from osd.pipeline.data import NormalData, weights_path
from osd.pipeline.job import Job
from osd.progress import Reporter, ensure
from osd.records import Record
from osd.types import JsonObject, Settings

# Bump when the meaning of a fitted detector or its scores changes.
# 6: search auto (inverted file above exact_up_to rows); 5: one cached-step mechanism; key covers defective
# images and masks; 4: in-domain test
ALGORITHM = "patchcore/7"  # 7: the in-domain test in the threshold's unit (images with images)
UNIT_WORDS = {CROP: "crop (an about-square image is one crop; a Severstal strip is cut into square crops)",
              IMAGE: "image (an about-square image whole; a long one as the largest of its crop scores, as predict)"}
SECTIONS = ("patchcore", "normal", "project.seed")

# The in-domain AUROC's interval is derived from the stored scores when a fit is read (not cached), so it has its
# own version: 2: exact at a perfect separation, Newcombe's score interval otherwise (1: a bootstrap in the fit)
INDOMAIN_INTERVAL = "indomain-interval/2"


def _indomain(payload: Mapping[str, Any]) -> JsonObject:
    """The in-domain test as stored, its AUROC interval derived anew from the stored scores: a view, so a fit
    made before the interval changed (issue 48: exact at a perfect separation) is not refitted for it."""
    out = dict(payload.get("indomain") or {})
    scores = payload.get("indomain_scores") or {}
    if out.get("available") and "defect" in scores and "negative" in scores:
        out["auroc_ci95"] = auroc_interval(np.asarray(scores["defect"], dtype=float),
                                           np.asarray(scores["negative"], dtype=float))
    return out


def stage1_spec(job: Job, recorded: Settings | None = None) -> Stage1Spec:
    """What rebuilds stage 1: the project's settings, or those a fit recorded (``recorded``) over them."""
    cfg = job.cfg
    flat = {**cfg.flat(SPEC_SETTINGS), **{k: v for k, v in (recorded or {}).items() if k in SPEC_SETTINGS}}
    return Stage1Spec.from_settings(flat, weights_path(cfg, str(flat["patchcore.weights"])))


def build_extractor(spec: Stage1Spec, device, compute_dtype):
    """The patch feature extractor; seeded, so random-init weights are the same at fit and at test time.
    ``compute_dtype``: its backbone's autocast dtype (the project's resolved precision; the ONNX export
    asks for float32)."""
    import torch

    from osd.models.backbones import build
    from osd.patchcore.features import PatchFeatureExtractor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        backbone = build(spec.backbone, spec.weights)
    extractor = PatchFeatureExtractor(backbone, list(spec.layers), spec.reduce_dim, spec.seed, spec.backbone).to(device)
    extractor.compute_dtype = compute_dtype
    return extractor


@dataclass(frozen=True)
class Stage1FitRecord(Record):
    """The PatchCore fit as the study reads it: sizes and timings, the threshold and the scores it was
    set on, the in-domain test; a view of the fit's artifact (``patchcore.npz``), never recomputed."""

    stats: JsonObject
    threshold: float
    acceptance: float
    threshold_summary: JsonObject
    calibration_scores: list[float]
    test_scores: list[float]
    false_alarm_rate: float | None
    indomain: JsonObject
    cached: bool
    path: str
    artifact_id: str = ""
    provenance: artifacts.Provenance = field(default_factory=artifacts.Provenance.empty)

    def to_dict(self) -> JsonObject:
        return {**super().to_dict(), "score_sign": "higher = more anomalous (nearest-neighbour patch distance)"}

    @classmethod
    def from_step(cls, step: artifacts.Step) -> Stage1FitRecord:
        """The view of a fit's artifact (its step as read or computed)."""
        payload = step.payload
        thr = payload["threshold"]
        test = np.asarray(payload["test_scores"], dtype=float)
        return cls(payload["stats"], thr.threshold_, thr.acceptance, thr.summary(),
                   [float(v) for v in payload["calibration_scores"]], [float(v) for v in test],
                   _false_alarm(test, thr.threshold_), _indomain(payload), step.cached,
                   str(step.path), step.id, step.lineage)

    @property
    def id(self) -> str:
        """The fit's artifact id, as a :class:`osd.artifacts.Step` names its own."""
        return self.artifact_id

    def shown(self) -> JsonObject:
        """The statistics with the in-domain test, as ``fit_stats.json`` shows them (NaN as None)."""
        return artifacts.plain({**self.stats, "indomain": self.indomain})


def stage1_unit(in_domain: bool) -> str:
    """The unit stage 1 is calibrated and tested in: an image for the line's own normals, else a crop."""
    return IMAGE if in_domain else CROP


def unit_of(job: Job) -> str:
    """The project's stage-1 unit: an image for a line's own normals and for the detection study
    (an engineer accepts or rejects a part, not a crop), else a crop."""
    cfg = job.cfg
    return stage1_unit(cfg.normal.in_domain or cfg.project.study == "detection")


def patchcore_key(job: Job, data: NormalData, acceptance: float | None = None) -> str:
    """The fit's cache key; ``acceptance``: in place of ``patchcore.acceptance`` (the bank's own key
    leaves the threshold out by giving one fixed value)."""
    # the defective images and their masks feed the in-domain test stored with the fit; whether the
    # normal images are of the defects' line changes what the splits test, never the fit; the chunk
    # size means nothing to the exact greedy
    cfg = job.cfg
    unused = {"normal.in_domain"} | ({"patchcore.coreset_chunk"} if cfg.patchcore.coreset == "greedy" else set())
    if cfg.patchcore.search in ("torch", "faiss"):  # an exact search: the inverted file's settings mean nothing
        unused |= {"patchcore.ivf_probe", "patchcore.exact_up_to"}
    settings = {k: v for k, v in job.settings(SECTIONS).items() if k not in unused}
    if acceptance is not None:
        settings["patchcore.acceptance"] = acceptance
    # the unit joins the key only where it is an image, so the crop-unit fits made before it stay valid
    unit = [] if unit_of(job) == CROP else ["unit: image"]
    unit += ["bank: image units"] if cfg.project.study == "detection" else []
    # likewise the precision: only a reduced one joins the key (the extractor was channels-last already)
    precision = job.resources.patchcore.precision
    unit += [] if precision == "fp32" else [f"precision: {precision}"]
    return artifacts.cache_key("patchcore", ALGORITHM, settings, data.fingerprint(), data.defect_fingerprint(), *unit)


def _bank_paths(job: Job, data: NormalData) -> list[Path]:
    cfg = job.cfg
    paths = list(data.split.bank)
    cap = cfg.patchcore.max_bank_images
    if len(paths) > cap:
        keep = sorted(rng_for(cfg.project.seed, "bank-cap").choice(len(paths), cap, replace=False))
        paths = [paths[i] for i in keep]
    return paths


def _false_alarm(scores: np.ndarray, threshold: float) -> float | None:
    s = scores[np.isfinite(scores)]
    return float(np.mean(s > threshold)) if s.size else None


def stage1_fit_step(job: Job, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The PatchCore artifact (bank, threshold, scores, in-domain test): cached, or fitted under its lock."""
    from osd.models.backbones import check_patch_backbone

    cfg = job.cfg
    reporter = ensure(reporter)
    check_patch_backbone(cfg.patchcore.backbone, list(cfg.patchcore.layers))  # before any data is read
    data = job.normals
    key = patchcore_key(job, data)
    # everything but the acceptance target: a fit that differs from the one asked for only there is
    # thresholded anew from its stored calibration scores (osd patchcore fit --acceptance), never refitted
    bank_key = patchcore_key(job, data, acceptance=0.5)
    layout = job.layout

    def compute() -> tuple[dict[str, Any], artifacts.Provenance]:
        old = None if force else artifacts.load(layout.detector, None)
        if isinstance(old, dict) and old.get("bank_key") == bank_key:
            return _rethreshold_stage1_fit(job, old, key, layout, reporter)
        payload, prov = _compute_stage1_fit(job, data, key, layout, reporter)
        return {**payload, "bank_key": bank_key}, prov

    return artifacts.cached_step(layout.detector, key, compute, force=force, on_wait=reporter.note)


def _rethreshold_stage1_fit(job: Job, old: dict[str, Any], key: str, layout: artifacts.Layout, reporter: Reporter
                 ) -> tuple[dict[str, Any], artifacts.Provenance]:
    """A stored fit with its threshold set anew at ``patchcore.acceptance`` on its calibration scores."""
    from osd.osr.thresholds import AcceptanceThreshold

    cfg = job.cfg
    unit = old["stats"].get("unit", CROP)
    thr = AcceptanceThreshold(cfg.patchcore.acceptance, f"PatchCore threshold (calibration {unit}s)").fit(
        np.asarray(old["calibration_scores"], dtype=float))
    reporter.note(f"PatchCore: threshold set anew for a {cfg.patchcore.acceptance:g} pass rate on the "
                  f"{len(old['calibration_scores'])} stored calibration scores (no refit)")
    indomain = dict(old.get("indomain") or {})
    if indomain.get("available") and old.get("indomain_scores"):
        indomain.update(indomain_rates(old["indomain_scores"], thr.threshold_))
    stats = {**old["stats"], "thresholded_anew_from_acceptance": float(old["threshold"].acceptance)}
    prov = artifacts.provenance(cfg, "patchcore fit", ALGORITHM, key, SECTIONS,
                                {"normal_images": job.normals.fingerprint(),
                                 "weights": job.weights(cfg.patchcore.weights, cfg.patchcore.backbone)},
                                compute=job.resources.precision_identity("patchcore"),
                                thresholded_anew=True)
    payload = {**old, "threshold": thr, "indomain": indomain, "stats": stats}
    _write_fit_files(layout, job, stats, payload, thr, prov, unit)
    return payload, prov


@runtime.scoped
def _compute_stage1_fit(job: Job, data: NormalData, key: str, layout: artifacts.Layout, reporter: Reporter
         ) -> tuple[dict[str, Any], artifacts.Provenance]:
    """The library's fit (:func:`osd.patchcore.fit.fit_stage1`) on the project's normal images."""
    from osd.models.backbones import describe_weights
    from osd.patchcore.fit import fit_stage1
    from osd.patchcore.model import PatchCore

    cfg = job.cfg
    res = job.resources
    device = res.setup()
    runtime.seed_everything(cfg.project.seed)
    pc, unit, compute = cfg.patchcore, unit_of(job), res.patchcore
    bank_paths = _bank_paths(job, data)
    plan = Stage1Plan(job.stage1_sizes, unit, cfg.project.study == "detection", pc.acceptance)
    estimator = PatchCore(pc.coreset_ratio, pc.projection_dim, pc.num_neighbors, pc.search, cfg.project.seed,
                          pc.coreset, pc.coreset_chunk, pc.ivf_probe, pc.exact_up_to)
    defects = DefectParts(data.defective, data.masks, cfg.normal.min_defect_fraction) if data.defective else None
    fit = fit_stage1(estimator, build_extractor(stage1_spec(job), device, compute.dtype),
                     NormalParts(tuple(bank_paths), tuple(data.split.calibration), tuple(data.split.test)), plan, device,
                     label=f"PatchCore: {pc.backbone} ({describe_weights(pc.weights)} weights)", defects=defects,
                     reporter=reporter)
    stats, m = dict(fit.estimator_stats), fit.measured
    stats.update(
        source=data.source, bank_images=len(bank_paths), bank_images_available=len(data.split.bank),
        max_bank_images=pc.max_bank_images, bank_crops=m["bank_crops"],
        calibration_images=len(data.split.calibration), calibration_crops=m["calibration_crops"],
        test_images=len(data.split.test), test_crops=m["test_crops"],
        coreset_ratio=pc.coreset_ratio, fit_seconds=stats["extract_seconds"] + stats["select_seconds"],
        total_seconds=m["total_seconds"], python_peak_mb=m["python_peak_mb"],
        weights=describe_weights(pc.weights), backbone=pc.backbone,
        image_size=pc.image_size, unit=unit, unit_description=UNIT_WORDS[unit],
        calibration_units=m["calibration_units"], test_units=m["test_units"], precision=compute.precision,
    )
    prov = artifacts.provenance(cfg, "patchcore fit", ALGORITHM, key, SECTIONS,
                                {"normal_images": data.fingerprint(),
                                 "weights": job.weights(pc.weights, pc.backbone)},
                                compute=res.precision_identity("patchcore"))
    payload = {
        "bank": fit.detector.bank_, "ivf_centroids": fit.detector.centroids_, "threshold": fit.threshold,
        "calibration_scores": fit.calibration_scores, "test_scores": fit.test_scores, "stats": stats,
        "calibration": fit.calibration_ids, "test": fit.test_ids,
        "skipped": fit.skipped, "indomain": fit.indomain, "indomain_scores": fit.indomain_scores,
    }
    _write_fit_files(layout, job, stats, payload, fit.threshold, prov, unit)
    return payload, prov


def _write_fit_files(layout: artifacts.Layout, job: Job, stats: JsonObject, payload: dict[str, Any], thr,
                     prov: artifacts.Provenance, unit: str) -> None:
    """The fit's readable files beside its artifact: statistics, threshold, config and scores by id."""
    cfg = job.cfg
    artifacts.write_json(layout.patchcore_stats, {**stats, "indomain": payload["indomain"], "provenance": prov})
    artifacts.write_json(layout.patchcore_threshold, {**thr.summary(), "rule": "defect when score > threshold",
                                                  "unit": unit, "provenance": prov})
    artifacts.write_json(layout.patchcore_config, cfg.to_dict())
    artifacts.write_json(layout.patchcore_scores, {
        "calibration": dict(zip(payload["calibration"], payload["calibration_scores"])),
        "test": dict(zip(payload["test"], payload["test_scores"])),
        "threshold": thr.threshold_, "unit": unit, "skipped": payload["skipped"], "provenance": prov},
        {"calibration": f"unreadable {unit}", "test": f"unreadable {unit}"})


def stage1_fit(job: Job, force: bool = False, reporter: Reporter | None = None) -> Stage1FitRecord:
    """Fit (or load) the stage-1 detector and its threshold on calibration normals."""
    return Stage1FitRecord.from_step(stage1_fit_step(job, force, reporter))


def stored_stage1_fit(layout: artifacts.Layout) -> Stage1FitRecord | None:
    """The PatchCore fit on disk as it was computed (None when there is none); fits nothing."""
    try:
        return Stage1FitRecord.from_step(artifacts.require(layout.detector, "patchcore fit", "PatchCore detector"))
    except ArtifactError:
        return None


def stage1_models(job: Job, device, reporter: Reporter | None = None):
    """(PatchCore, extractor, fit result) of the fitted detector, fitting it first if needed."""
    step = stage1_fit_step(job, False, reporter)
    spec = stage1_spec(job)
    dtype = job.resources.patchcore.dtype
    return (spec.detector(step.payload), build_extractor(spec, device, dtype),
            Stage1FitRecord.from_step(step))

"""Step ``patchcore fit`` and stage-1 scoring: the PatchCore detector on normal crops, its threshold
on calibration normals, and scores of any list of crops keyed by what they are.

The threshold is set in the unit it is applied in (:func:`stage1_unit`):
- NEU + Severstal (normal images from another source): one square crop of steel. A NEU image
  (200x200) is about the size of one 256-pixel Severstal crop, so Severstal normals are scored per
  crop and NEU images whole; threshold and false-alarm rate are per crop.
- The line's own normal images (``normal.in_domain``): one image, by the rule the test images and
  ``predict`` use (:func:`image_units`: an about-square image whole, a long one as the largest of its
  crop scores). The calibration set is then counted in images, the independent units, so its
  Clopper-Pearson interval is the acceptance a new good part gets.

Scores are never paired with images by position: every scored crop carries its sample id
(``path`` or ``path#x0,y0,x1,y1``), and a crop that cannot be read is reported by id, not dropped.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.config import Config
from osd.data.splits import rng_for
from osd.errors import ArtifactError, DataError
from osd.pipeline.data import NormalData, normal_data, settings_key, stage1_sizes, weights_identity
from osd.progress import Reporter, ensure
from osd.stage1 import (
    Sample,
    Stage1Sizes,
    crop_samples,
    feature_batches,
    sample_id,
    score_crops,
    score_images,
    unit_samples,
)

# Bump when the meaning of a fitted detector or its scores changes.
# 6: search auto (inverted file above exact_up_to rows); 5: one cached-step mechanism; key covers defective
# images and masks; 4: in-domain test
ALGORITHM = "patchcore/6"
CROP, IMAGE = "crop", "image"
UNIT_WORDS = {CROP: "crop (an about-square image is one crop; a Severstal strip is cut into square crops)",
              IMAGE: "image (an about-square image whole; a long one as the largest of its crop scores, as predict)"}
SECTIONS = ("patchcore", "normal", "project.seed")

def build_extractor(cfg: Config, device, precision: str | None = None):
    """The patch feature extractor; seeded, so random-init weights are the same at fit and at test time.
    ``precision``: its backbone's autocast precision (``None``: ``project.precision`` resolved; the
    ONNX export asks for ``fp32``)."""
    import torch

    from osd.models.backbones import build
    from osd.patchcore.features import PatchFeatureExtractor
    from osd.pipeline.data import weights_path
    from osd.precision import DTYPES

    pc = cfg.patchcore
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.project.seed)
        backbone = build(pc.backbone, weights_path(cfg, pc.weights))
    extractor = PatchFeatureExtractor(backbone, pc.layers, pc.reduce_dim, cfg.project.seed, pc.backbone).to(device)
    extractor.compute_dtype = runtime.compute(cfg, "patchcore").dtype if precision is None else DTYPES[precision]
    return extractor


@dataclass(frozen=True)
class FitResult:
    """The PatchCore fit as the study reads it: sizes and timings, the threshold and the scores it was
    set on, the in-domain test; a view of the fit's artifact (``patchcore.npz``), never recomputed."""

    stats: dict[str, Any]
    threshold: float
    acceptance: float
    threshold_summary: dict[str, Any]
    calibration_scores: list[float]
    test_scores: list[float]
    false_alarm_rate: float | None
    indomain: dict[str, Any]
    cached: bool
    path: str
    artifact_id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score_sign": "higher = more anomalous (nearest-neighbour patch distance)"}

    @classmethod
    def from_step(cls, step: artifacts.Step) -> FitResult:
        """The view of a fit's artifact (its step as read or computed)."""
        payload = step.payload
        thr = payload["threshold"]
        test = np.asarray(payload["test_scores"], dtype=float)
        return cls(payload["stats"], thr.threshold_, thr.acceptance, thr.summary(),
                   [float(v) for v in payload["calibration_scores"]], [float(v) for v in test],
                   _false_alarm(test, thr.threshold_), dict(payload.get("indomain") or {}), step.cached,
                   str(step.path), step.id, step.lineage)

    @property
    def id(self) -> str:
        """The fit's artifact id, as a :class:`osd.artifacts.Step` names its own."""
        return self.artifact_id

    def shown(self) -> dict[str, Any]:
        """The statistics with the in-domain test, as ``fit_stats.json`` shows them (NaN as None)."""
        return artifacts.plain({**self.stats, "indomain": self.indomain})


def stage1_unit(in_domain: bool) -> str:
    """The unit stage 1 is calibrated and tested in: an image for the line's own normals, else a crop."""
    return IMAGE if in_domain else CROP


def unit_of(cfg: Config) -> str:
    """The project's stage-1 unit: an image for a line's own normals and for the detection study
    (an engineer accepts or rejects a part, not a crop), else a crop."""
    return stage1_unit(cfg.normal.in_domain or cfg.project.study == "detection")


def patchcore_key(cfg: Config, data: NormalData) -> str:
    # the defective images and their masks feed the in-domain test stored with the fit; whether the
    # normal images are of the defects' line changes what the splits test, never the fit; the chunk
    # size means nothing to the exact greedy
    unused = {"normal.in_domain"} | ({"patchcore.coreset_chunk"} if cfg.patchcore.coreset == "greedy" else set())
    if cfg.patchcore.search in ("torch", "faiss"):  # an exact search: the inverted file's settings mean nothing
        unused |= {"patchcore.ivf_probe", "patchcore.exact_up_to"}
    settings = {k: v for k, v in settings_key(cfg, SECTIONS).items() if k not in unused}
    # the unit joins the key only where it is an image, so the crop-unit fits made before it stay valid
    unit = [] if unit_of(cfg) == CROP else ["unit: image"]
    unit += ["bank: image units"] if cfg.project.study == "detection" else []
    # likewise the precision: only a reduced one joins the key (the extractor was channels-last already)
    precision = runtime.compute(cfg, "patchcore").precision
    unit += [] if precision == "fp32" else [f"precision: {precision}"]
    return artifacts.cache_key("patchcore", ALGORITHM, settings, data.fingerprint(), data.defect_fingerprint(), *unit)


def _bank_paths(cfg: Config, data: NormalData) -> list[Path]:
    paths = list(data.split.bank)
    cap = cfg.patchcore.max_bank_images
    if len(paths) > cap:
        keep = sorted(rng_for(cfg.project.seed, "bank-cap").choice(len(paths), cap, replace=False))
        paths = [paths[i] for i in keep]
    return paths


def _fit_estimator(cfg: Config, samples: Sequence[Sample], device, reporter: Reporter | None = None,
                 sizes: Stage1Sizes | None = None):
    """(fitted PatchCore, extractor) on the given crops: features streamed batch by batch."""
    from osd.patchcore.model import PatchCore

    pc = cfg.patchcore
    extractor = build_extractor(cfg, device)
    maps = (feats for _, feats in feature_batches(extractor, samples, sizes or stage1_sizes(cfg), device))
    detector = PatchCore(pc.coreset_ratio, pc.projection_dim, pc.num_neighbors, pc.search, cfg.project.seed,
                         pc.coreset, pc.coreset_chunk, pc.ivf_probe, pc.exact_up_to)
    return detector.fit(maps, reporter, total=len(samples)), extractor


def _false_alarm(scores: np.ndarray, threshold: float) -> float | None:
    s = scores[np.isfinite(scores)]
    return float(np.mean(s > threshold)) if s.size else None


def fitted(cfg: Config, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The PatchCore artifact (bank, threshold, scores, in-domain test): cached, or fitted under its lock."""
    from osd.models.backbones import check_patch_backbone

    reporter = ensure(reporter)
    check_patch_backbone(cfg.patchcore.backbone, list(cfg.patchcore.layers))  # before any data is read
    data = normal_data(cfg)
    key = patchcore_key(cfg, data)
    # everything but the acceptance target: a fit that differs from the one asked for only there is
    # thresholded anew from its stored calibration scores (osd patchcore fit --acceptance), never refitted
    bank_key = patchcore_key(cfg.replace(**{"patchcore.acceptance": 0.5}), data)
    layout = artifacts.Layout(cfg.output_dir)

    def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        old = None if force else artifacts.load(layout.detector, None)
        if isinstance(old, dict) and old.get("bank_key") == bank_key:
            return _rethreshold(cfg, old, key, layout, reporter)
        payload, prov = _fit(cfg, data, key, layout, reporter)
        return {**payload, "bank_key": bank_key}, prov

    return artifacts.cached_step(layout.detector, key, compute, force=force, on_wait=reporter.note)


def _rethreshold(cfg: Config, old: dict[str, Any], key: str, layout: artifacts.Layout, reporter: Reporter
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored fit with its threshold set anew at ``patchcore.acceptance`` on its calibration scores."""
    from osd.osr.thresholds import AcceptanceThreshold

    unit = old["stats"].get("unit", CROP)
    thr = AcceptanceThreshold(cfg.patchcore.acceptance, f"PatchCore threshold (calibration {unit}s)").fit(
        np.asarray(old["calibration_scores"], dtype=float))
    reporter.note(f"PatchCore: threshold set anew for a {cfg.patchcore.acceptance:g} pass rate on the "
                  f"{len(old['calibration_scores'])} stored calibration scores (no refit)")
    indomain = dict(old.get("indomain") or {})
    if indomain.get("available") and old.get("indomain_scores"):
        indomain.update(_indomain_rates(old["indomain_scores"], thr.threshold_))
    stats = {**old["stats"], "thresholded_anew_from_acceptance": float(old["threshold"].acceptance)}
    prov = artifacts.provenance(cfg, "patchcore fit", ALGORITHM, key, SECTIONS,
                                {"normal_images": normal_data(cfg).fingerprint(),
                                 "weights": weights_identity(cfg, cfg.patchcore.weights, cfg.patchcore.backbone)},
                                compute=runtime.precision_identity(cfg, "patchcore"), thresholded_anew=True)
    payload = {**old, "threshold": thr, "indomain": indomain, "stats": stats}
    _write_fit_files(layout, cfg, stats, payload, thr, prov, unit)
    return payload, prov


def _indomain_rates(scores: dict[str, Any], threshold: float) -> dict[str, float | None]:
    """The in-domain test's rates at ``threshold`` from its stored crop scores."""
    pos, neg, clean = (np.asarray(scores[k], dtype=float) for k in ("defect", "negative", "clean"))
    return {"detection_rate": float(np.mean(pos > threshold)) if len(pos) else None,
            "false_alarm_rate": float(np.mean(neg > threshold)) if len(neg) else None,
            "false_alarm_rate_clean_crops_of_defective_images": float(np.mean(clean > threshold)) if len(clean) else None}


@runtime.scoped
def _fit(cfg: Config, data: NormalData, key: str, layout: artifacts.Layout, reporter: Reporter
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    from osd.models.backbones import describe_weights
    from osd.osr.thresholds import AcceptanceThreshold

    device = runtime.setup(cfg)
    runtime.seed_everything(cfg.project.seed)
    bank_paths, sizes = _bank_paths(cfg, data), stage1_sizes(cfg)
    unit = unit_of(cfg)
    # the detection study's bank is cut like its test images (image_units: a square image whole, a
    # strip into crops), so a large square part is never banked in crops and tested whole
    bank_samples = unit_samples(bank_paths, sizes) if cfg.project.study == "detection" else crop_samples(bank_paths, sizes)
    cal_samples = crop_samples(data.split.calibration, sizes) if unit == CROP else []
    _require_crops(sizes, {"bank": (bank_paths, bank_samples)} | (
        {"calibration": (data.split.calibration, cal_samples)} if unit == CROP else {}))
    reporter.note(f"PatchCore: {cfg.patchcore.backbone} ({describe_weights(cfg.patchcore.weights)} weights), "
                  f"{len(bank_paths)} bank images ({len(bank_samples)} crops), device {device}")
    start = time.perf_counter()
    tracing = tracemalloc.is_tracing()  # the caller's tracing is left as it was
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    detector, extractor = _fit_estimator(cfg, bank_samples, device, reporter, sizes)
    peak_py = tracemalloc.get_traced_memory()[1]
    if not tracing:
        tracemalloc.stop()
    stats = dict(detector.fit_stats_)
    cal, cal_ids, cal_skipped = _score_normals(sizes, unit, detector, extractor, data.split.calibration, cal_samples,
                                               device, reporter, "calibration normals")
    test_samples = crop_samples(data.split.test, sizes) if unit == CROP else []
    test, test_ids, test_skipped = _score_normals(sizes, unit, detector, extractor, data.split.test, test_samples,
                                                  device, reporter, "test normals")
    thr = AcceptanceThreshold(cfg.patchcore.acceptance, f"PatchCore threshold (calibration {unit}s)").fit(cal)
    indomain, indomain_skipped, indomain_scores = _indomain(cfg, data, detector, extractor, device, reporter, test,
                                                            thr.threshold_)
    stats.update(
        source=data.source, bank_images=len(bank_paths), bank_images_available=len(data.split.bank),
        max_bank_images=cfg.patchcore.max_bank_images, bank_crops=len(bank_samples),
        calibration_images=len(data.split.calibration), calibration_crops=len(cal_samples),
        test_images=len(data.split.test), test_crops=len(test_samples),
        coreset_ratio=cfg.patchcore.coreset_ratio, fit_seconds=stats["extract_seconds"] + stats["select_seconds"],
        total_seconds=time.perf_counter() - start, python_peak_mb=peak_py / 2**20,
        weights=describe_weights(cfg.patchcore.weights), backbone=cfg.patchcore.backbone,
        image_size=cfg.patchcore.image_size, unit=unit, unit_description=UNIT_WORDS[unit],
        calibration_units=len(cal_ids), test_units=len(test_ids), precision=runtime.compute(cfg, "patchcore").precision,
    )
    prov = artifacts.provenance(cfg, "patchcore fit", ALGORITHM, key, SECTIONS,
                                {"normal_images": data.fingerprint(),
                                 "weights": weights_identity(cfg, cfg.patchcore.weights, cfg.patchcore.backbone)},
                                compute=runtime.precision_identity(cfg, "patchcore"))
    payload = {
        "bank": detector.bank_, "ivf_centroids": detector.centroids_, "threshold": thr,
        "calibration_scores": cal, "test_scores": test, "stats": stats,
        "calibration": cal_ids, "test": test_ids,
        "skipped": {**cal_skipped, **test_skipped, **indomain_skipped}, "indomain": indomain,
        "indomain_scores": indomain_scores,
    }
    _write_fit_files(layout, cfg, stats, payload, thr, prov, unit)
    return payload, prov


def _write_fit_files(layout: artifacts.Layout, cfg: Config, stats: dict[str, Any], payload: dict[str, Any], thr,
                     prov: dict[str, Any], unit: str) -> None:
    """The fit's readable files beside its artifact: statistics, threshold, config and scores by id."""
    artifacts.write_json(layout.patchcore_stats, {**stats, "indomain": payload["indomain"], "provenance": prov})
    artifacts.write_json(layout.patchcore_threshold, {**thr.summary(), "rule": "defect when score > threshold",
                                                  "unit": unit, "provenance": prov})
    artifacts.write_json(layout.patchcore_config, cfg.to_dict())
    artifacts.write_json(layout.patchcore_scores, {
        "calibration": dict(zip(payload["calibration"], payload["calibration_scores"])),
        "test": dict(zip(payload["test"], payload["test_scores"])),
        "threshold": thr.threshold_, "unit": unit, "skipped": payload["skipped"], "provenance": prov},
        {"calibration": f"unreadable {unit}", "test": f"unreadable {unit}"})


def _score_normals(sizes: Stage1Sizes, unit: str, detector, extractor, paths: Sequence[Path], samples: list[Sample], device,
                   reporter: Reporter, label: str) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Scores of normal images in the stage-1 unit, with their ids (crop ids, or image paths)."""
    if unit == CROP:
        scores, skipped = score_crops(detector, extractor, samples, sizes, device, reporter, label)
        return scores, [sample_id(s) for s in samples], skipped
    scores, skipped = score_images(detector, extractor, paths, sizes, device, reporter, label)
    return scores, [str(p) for p in paths], skipped


def _require_crops(n: Stage1Sizes, parts: dict[str, tuple[Sequence[Path], list[Sample]]]) -> None:
    """One line, before any feature is computed, when a part of the normal images gives no crop at all."""
    for name, (paths, samples) in parts.items():
        if paths and not samples:
            raise DataError(
                f"the {len(paths)} {name} normal image(s) give 0 crops: every crop is darker than allowed "
                f"(normal.dark_threshold = {n.dark_threshold}, normal.max_dark_fraction = {n.max_dark_fraction}); "
                "raise max_dark_fraction, lower dark_threshold, or add normal images with visible steel")


def _indomain(cfg: Config, data: NormalData, detector, extractor, device, reporter: Reporter,
              normal_test: np.ndarray, threshold: float) -> tuple[dict[str, Any], dict[str, str]]:
    """Stage 1 where it is in-domain: crops of defective Severstal images labelled by their masks,
    against the held-out normal crops and the defect-free crops of the defective images."""
    from sklearn.metrics import roc_auc_score

    from osd.pipeline.data import labelled_defect_crops

    if not data.defective:
        return ({"available": False, "reason": "no defective images with masks (normal.folder or none in train.csv)"},
                {}, {})
    samples, labels, ambiguous = labelled_defect_crops(cfg, data)
    scores, skipped = score_crops(detector, extractor, samples, stage1_sizes(cfg), device, reporter, "defective Severstal crops")
    ok = np.isfinite(scores)
    y = np.asarray(labels, dtype=bool)[ok]
    s = scores[ok]
    normal_test = normal_test[np.isfinite(normal_test)]
    neg = np.concatenate([normal_test, s[~y]])
    pos = s[y]
    both = len(pos) and len(neg)
    auroc = float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])) if both else None
    return {
        "available": True, "unit": "crop", "defective_images": len(data.defective),
        "defect_crops": int(len(pos)), "clean_crops_of_defective_images": int((~y).sum()),
        "normal_test_crops": int(len(normal_test)), "ambiguous_crops_left_out": ambiguous,
        "min_defect_fraction": cfg.normal.min_defect_fraction,
        "auroc": auroc,
        **_indomain_rates({"defect": pos, "negative": neg, "clean": s[~y]}, threshold),
        "definition": "defect = crop whose train.csv masks cover >= min_defect_fraction of it; normal = held-out "
                      "normal-image crops and mask-free crops of the defective images; AUROC with defect positive",
    }, skipped, {"defect": pos, "negative": neg, "clean": s[~y]}


def fit_patchcore(cfg: Config, force: bool = False, reporter: Reporter | None = None) -> FitResult:
    """Fit (or load) the stage-1 detector and its threshold on calibration normals."""
    return FitResult.from_step(fitted(cfg, force, reporter))


def stored_fit(layout: artifacts.Layout) -> FitResult | None:
    """The PatchCore fit on disk as it was computed (None when there is none); fits nothing."""
    try:
        return FitResult.from_step(artifacts.require(layout.detector, "patchcore fit", "PatchCore detector"))
    except ArtifactError:
        return None


def load_detector(cfg: Config, device, reporter: Reporter | None = None):
    """(PatchCore, extractor, fit result) of the fitted detector, fitting it first if needed."""
    step = fitted(cfg, False, reporter)
    return detector_from(cfg, step.payload), build_extractor(cfg, device), FitResult.from_step(step)


def detector_from(cfg: Config, payload: dict[str, Any]):
    """The fitted PatchCore of a stored fit: its bank, searched as it was when fitted (the inverted
    file's stored centroids when the fit used one)."""
    from osd.patchcore.model import PatchCore

    pc = cfg.patchcore
    return PatchCore.from_bank(payload["bank"], pc.num_neighbors, pc.search, payload.get("ivf_centroids"),
                               seed=cfg.project.seed, probe=pc.ivf_probe, exact_up_to=pc.exact_up_to)

"""Stage 1 fitted and calibrated, from explicit inputs: the library half of ``osd patchcore fit``.

:func:`fit_stage1` takes the normal images by part (:class:`NormalParts`), the sizes and unit they
are cut and scored in (:class:`Stage1Plan`), an unfitted :class:`~osd.patchcore.model.PatchCore`
and a patch feature extractor; it fits the estimator on the bank, scores the calibration and test
normals in the stage-1 unit, sets the threshold on the calibration scores and, where defective
images with masks are given (:class:`DefectParts`), runs the in-domain test. No project config, no
cache, no file: the step (:mod:`osd.pipeline.detector`) resolves the settings, caches the result
and writes its readable files.

The unit (:data:`CROP` or :data:`IMAGE`) is the one the threshold is applied in:
- NEU + Severstal (normal images from another source): one square crop of steel. A NEU image
  (200x200) is about the size of one 256-pixel Severstal crop, so Severstal normals are scored per
  crop and NEU images whole; threshold and false-alarm rate are per crop.
- The line's own normal images: one image, by the rule the test images and ``predict`` use
  (:func:`~osd.patchcore.stage1.image_units`), so the calibration set is counted in images, the
  independent units, and its Clopper-Pearson interval is the acceptance a new good part gets.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd.errors import DataError
from osd.patchcore.stage1 import (
    Sample,
    Stage1Sizes,
    crop_boxes_of,
    crop_samples,
    feature_batches,
    sample_id,
    score_crops,
    score_images,
    unit_samples,
    warn_small,
)
from osd.progress import Reporter, ensure
from osd.types import JsonObject

CROP, IMAGE = "crop", "image"


@dataclass(frozen=True)
class NormalParts:
    """The defect-free images by role: the bank PatchCore is fitted on, calibration (the threshold), test."""

    bank: tuple[Path, ...]
    calibration: tuple[Path, ...]
    test: tuple[Path, ...]


@dataclass(frozen=True)
class DefectParts:
    """Defective images with their masks (RLE strings by file name) for the in-domain test; a crop is
    a defect when its masks cover at least ``min_defect_fraction`` of it."""

    images: tuple[Path, ...]
    masks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    min_defect_fraction: float = 0.01


@dataclass(frozen=True)
class Stage1Plan:
    """How the normal images are cut and scored: the sizes, the unit calibration and test normals are
    scored in, whether the bank is cut by image units (the detection study) and the acceptance target."""

    sizes: Stage1Sizes
    unit: str = CROP
    bank_by_image_units: bool = False
    acceptance: float = 0.95


@dataclass(frozen=True)
class Stage1Fit:
    """What :func:`fit_stage1` returns: the fitted estimator, the threshold, the scores it was set on
    (and the test normals' scores) by id, what could not be read, the in-domain test, the estimator's
    own statistics and what the fit measured (crop and unit counts, seconds, Python's peak memory)."""

    detector: Any
    threshold: Any
    calibration_scores: np.ndarray
    calibration_ids: list[str]
    test_scores: np.ndarray
    test_ids: list[str]
    skipped: dict[str, str]
    indomain: JsonObject
    indomain_scores: JsonObject
    estimator_stats: JsonObject
    measured: JsonObject


def fit_stage1(estimator, extractor, normals: NormalParts, plan: Stage1Plan, device, *, label: str = "PatchCore",
               defects: DefectParts | None = None, reporter: Reporter | None = None) -> Stage1Fit:
    """Fit ``estimator`` on the bank's patch features, score the calibration and test normals in the
    plan's unit, set the threshold at ``plan.acceptance`` on the calibration scores, and test stage 1
    in-domain on ``defects`` (when given). ``label`` opens the progress line."""
    from osd.osr.thresholds import AcceptanceThreshold

    reporter = ensure(reporter)
    sizes, unit = plan.sizes, plan.unit
    # the detection study's bank is cut like its test images (image_units: a square image whole, a
    # strip into crops), so a large square part is never banked in crops and tested whole
    bank = unit_samples(normals.bank, sizes) if plan.bank_by_image_units else crop_samples(normals.bank, sizes)
    cal_samples = crop_samples(normals.calibration, sizes) if unit == CROP else []
    require_crops(sizes, {"bank": (normals.bank, bank)} | (
        {"calibration": (normals.calibration, cal_samples)} if unit == CROP else {}))
    reporter.note(f"{label}, {len(normals.bank)} bank images ({len(bank)} crops), device {device}")
    start = time.perf_counter()
    tracing = tracemalloc.is_tracing()  # the caller's tracing is left as it was
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    maps = (feats for _, feats in feature_batches(extractor, bank, sizes, device))
    detector = estimator.fit(maps, reporter, total=len(bank))
    peak_py = tracemalloc.get_traced_memory()[1]
    if not tracing:
        tracemalloc.stop()
    cal, cal_ids, cal_skipped = score_normals(detector, extractor, normals.calibration, cal_samples, plan, device,
                                              reporter, "calibration normals")
    test_samples = crop_samples(normals.test, sizes) if unit == CROP else []
    test, test_ids, test_skipped = score_normals(detector, extractor, normals.test, test_samples, plan, device,
                                                 reporter, "test normals")
    thr = AcceptanceThreshold(plan.acceptance, f"PatchCore threshold (calibration {unit}s)").fit(cal)
    indomain, indomain_skipped, indomain_scores = indomain_test(detector, extractor, defects, sizes, device, reporter,
                                                                test, thr.threshold_, unit)
    measured = {"bank_crops": len(bank), "calibration_crops": len(cal_samples), "test_crops": len(test_samples),
                "total_seconds": time.perf_counter() - start, "python_peak_mb": peak_py / 2**20,
                "calibration_units": len(cal_ids), "test_units": len(test_ids)}
    return Stage1Fit(detector, thr, cal, cal_ids, test, test_ids, {**cal_skipped, **test_skipped, **indomain_skipped},
                     indomain, indomain_scores, dict(detector.fit_stats_), measured)


def score_normals(detector, extractor, paths: Sequence[Path], samples: list[Sample], plan: Stage1Plan, device,
                  reporter: Reporter, label: str) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Scores of normal images in the plan's unit, with their ids (crop ids, or image paths)."""
    if plan.unit == CROP:
        scores, skipped = score_crops(detector, extractor, samples, plan.sizes, device, reporter, label)
        return scores, [sample_id(s) for s in samples], skipped
    scores, skipped = score_images(detector, extractor, paths, plan.sizes, device, reporter, label)
    return scores, [str(p) for p in paths], skipped


def require_crops(n: Stage1Sizes, parts: dict[str, tuple[Sequence[Path], list[Sample]]]) -> None:
    """One line, before any feature is computed, when a part of the normal images gives no crop at all."""
    for name, (paths, samples) in parts.items():
        if paths and not samples:
            raise DataError(
                f"the {len(paths)} {name} normal image(s) give 0 crops: every crop is darker than allowed "
                f"(normal.dark_threshold = {n.dark_threshold}, normal.max_dark_fraction = {n.max_dark_fraction}); "
                "raise max_dark_fraction, lower dark_threshold, or add normal images with visible steel")


def labelled_crops(defects: DefectParts, sizes: Stage1Sizes) -> tuple[list[Sample], list[bool], int]:
    """Crops of the defective images with their label (True = defective) from the masks, and how many
    ambiguous crops (some mask, under ``min_defect_fraction``) were left out."""
    from osd.data import images
    from osd.data.severstal import decode_rle

    samples, labels, ambiguous, small = [], [], 0, []
    for path in defects.images:
        grey = np.asarray(images.load_rgb(path).convert("L"))
        mask = np.zeros(grey.shape, dtype=bool)
        for rle in defects.masks.get(path.name, ()):
            mask |= decode_rle(rle, grey.shape, f"train.csv ({path.name})")
        for box in crop_boxes_of(path, sizes, small):
            left, top, right, bottom = box
            cover = float(mask[top:bottom, left:right].mean())
            if cover >= defects.min_defect_fraction or cover == 0.0:
                samples.append((path, box))
                labels.append(cover > 0.0)
            else:
                ambiguous += 1
    warn_small(small, sizes, "defective")
    return samples, labels, ambiguous


def _indomain_images(detector, extractor, defects: DefectParts, sizes: Stage1Sizes, device, reporter: Reporter,
                     normal_test: np.ndarray, threshold: float) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The in-domain test per image: a defective image (one with a mask) against the held-out normal images."""
    from sklearn.metrics import roc_auc_score

    paths = list(defects.images)
    scores, skipped = score_images(detector, extractor, paths, sizes, device, reporter, "defective images")
    ok = np.isfinite(scores)
    y = np.array([bool(defects.masks.get(p.name)) for p in paths], dtype=bool)[ok]
    s = scores[ok]
    normal_test = normal_test[np.isfinite(normal_test)]
    pos, neg = s[y], np.concatenate([normal_test, s[~y]])
    auroc = float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])) \
        if len(pos) and len(neg) else None
    return {
        "available": True, "unit": IMAGE, "defective_images": len(paths), "defect_images": int(len(pos)),
        "normal_test_images": int(len(normal_test)), "auroc": auroc, "auroc_ci95": auroc_interval(pos, neg),
        **indomain_rates({"defect": pos, "negative": neg, "clean": s[~y]}, threshold),
        "definition": "defect = an image with a train.csv mask, scored whole as predict scores it; normal = the "
                      "held-out normal images; AUROC with defect positive (both in the image unit)",
    }, skipped, {"defect": pos, "negative": neg, "clean": s[~y]}


def auroc_interval(pos: np.ndarray, neg: np.ndarray, n_boot: int = 0, seed: int = 0) -> list[float] | None:
    """The 95% interval of the in-domain AUROC at its edges (exact at a perfect separation, Newcombe's
    score interval otherwise: :mod:`osd.ranking_intervals`; ``n_boot`` and ``seed`` are not used). Its
    images are crops, counted as independent: the caller says that the interval is per crop."""
    from osd.ranking_intervals import auroc_interval as edge_safe
    from osd.ranking_intervals import mann_whitney_auc

    if not (len(pos) and len(neg)):
        return None
    return edge_safe(mann_whitney_auc(pos, neg), len(pos), len(neg))


def indomain_rates(scores: dict[str, Any], threshold: float) -> dict[str, float | None]:
    """The in-domain test's rates at ``threshold`` from its stored crop scores."""
    pos, neg, clean = (np.asarray(scores[k], dtype=float) for k in ("defect", "negative", "clean"))
    return {"detection_rate": float(np.mean(pos > threshold)) if len(pos) else None,
            "false_alarm_rate": float(np.mean(neg > threshold)) if len(neg) else None,
            "false_alarm_rate_clean_crops_of_defective_images": float(np.mean(clean > threshold)) if len(clean) else None}


def indomain_test(detector, extractor, defects: DefectParts | None, sizes: Stage1Sizes, device, reporter: Reporter,
                  normal_test: np.ndarray, threshold: float, unit: str = CROP
                  ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """Stage 1 where it is in-domain, in the unit its threshold is applied in (``normal_test`` holds the
    held-out normals' scores in that unit). Per crop: crops of defective images labelled by their
    masks, against the held-out normal crops and the defect-free crops of the defective images. Per
    image: each defective image scored as ``predict`` scores an image, against the held-out normal
    images; never image scores against crop scores."""
    from sklearn.metrics import roc_auc_score

    if defects is None or not defects.images:
        return ({"available": False, "reason": "no defective images with masks (normal.folder or none in train.csv)"},
                {}, {})
    if unit == IMAGE:
        return _indomain_images(detector, extractor, defects, sizes, device, reporter, normal_test, threshold)
    samples, labels, ambiguous = labelled_crops(defects, sizes)
    scores, skipped = score_crops(detector, extractor, samples, sizes, device, reporter, "defective Severstal crops")
    ok = np.isfinite(scores)
    y = np.asarray(labels, dtype=bool)[ok]
    s = scores[ok]
    normal_test = normal_test[np.isfinite(normal_test)]
    neg = np.concatenate([normal_test, s[~y]])
    pos = s[y]
    both = len(pos) and len(neg)
    auroc = float(roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])) if both else None
    return {
        "available": True, "unit": "crop", "defective_images": len(defects.images),
        "defect_crops": int(len(pos)), "clean_crops_of_defective_images": int((~y).sum()),
        "normal_test_crops": int(len(normal_test)), "ambiguous_crops_left_out": ambiguous,
        "min_defect_fraction": defects.min_defect_fraction,
        "auroc": auroc, "auroc_ci95": auroc_interval(pos, neg),
        **indomain_rates({"defect": pos, "negative": neg, "clean": s[~y]}, threshold),
        "definition": "defect = crop whose train.csv masks cover >= min_defect_fraction of it; normal = held-out "
                      "normal-image crops and mask-free crops of the defective images; AUROC with defect positive",
    }, skipped, {"defect": pos, "negative": neg, "clean": s[~y]}

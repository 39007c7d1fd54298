"""Step ``detection``: the detection study of a line's good and bad parts (``project.study = detection``).

Stage 1 alone: the PatchCore fit on the normal images' bank share, its threshold on the
calibration share, and on test data the held-out normal images (the fit scored them) and every
defect image, each scored as one image (:func:`osd.patchcore.stage1.image_units`). The answer
is ``no_defect`` / ``defect``. The defect images are those under ``neu.root`` (any number of
classes, each a folder, or one flat folder); without ``neu.root``, Severstal's defective strips
(the rows of ``train.csv``). Without any defect image only the normal pass rate is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.csvrows import csv_text
from osd.decide import DEFECT, NO_DEFECT
from osd.detection import DetectionMetrics, evaluate
from osd.patchcore.stage1 import score_images
from osd.pipeline.detector import stage1_fit_step, stage1_models
from osd.pipeline.job import Job
from osd.progress import Reporter, ensure
from osd.records import Record
from osd.types import JsonObject

# 4: AUROC exact at a perfect separation, else Newcombe; 3: no zero-width bootstrap interval; 2: exact rates
DETECTION_ALGORITHM = "detection/4"
SECTION = "detection"


def defect_images(job: Job) -> tuple[list[Path], list[str], str]:
    """(paths, classes, where they came from): ``neu.root``'s images, else Severstal's defective strips
    (indexed once per job)."""
    return job.once("defect_images", lambda: _defect_images(job))


def _defect_images(job: Job) -> tuple[list[Path], list[str], str]:
    from osd.data.neu import index_neu

    cfg = job.cfg
    root = cfg.neu.root.strip()
    if root and cfg.path(root).is_dir():
        index = index_neu(cfg.path(root))
        return list(index.paths), list(index.labels), f"neu.root ({root}): {index.label_rule}"
    if cfg.normal.severstal_root:
        data = job.normals
        return list(data.defective), [DEFECT] * len(data.defective), "Severstal's defective strips (train.csv)"
    return [], [], "none: neu.root is not set and the normal images have no defective ones"


@dataclass(frozen=True)
class DetectionResult(Record):
    """One run of the detection study: the cached payload, its metrics.json section and its rows."""

    metrics: DetectionMetrics
    acceptance: float
    threshold_summary: JsonObject
    per_class: dict[str, float]  # detection rate per defect class
    operating_points: list[JsonObject]
    rows: list[JsonObject]
    defect_source: str
    unit: str
    cached: bool = False
    provenance: artifacts.Provenance = field(default_factory=artifacts.Provenance.empty)

    def section(self) -> JsonObject:
        """The ``detection`` section of ``metrics.json``."""
        return {**self.metrics.to_dict(), "acceptance": self.acceptance, "threshold_summary": self.threshold_summary,
                "detection_rate_per_class": self.per_class, "operating_points": self.operating_points,
                "defect_images": self.defect_source, "unit": self.unit,
                "score": "PatchCore: largest nearest-neighbour patch distance (higher = more anomalous)",
                "decision": f"{DEFECT} when the score is above the threshold, else {NO_DEFECT}",
                "provenance": self.provenance.document()}

    def csv(self) -> str:
        return csv_text(("path", "truth", "class", "score", "threshold", "decision"), self.rows)


def _rows(paths: list[str], truth: str, classes: list[str], scores: np.ndarray, thr: float) -> list[JsonObject]:
    return [{"path": p, "truth": truth, "class": c, "score": None if not np.isfinite(s) else round(float(s), 6),
             "threshold": round(thr, 6), "decision": "" if not np.isfinite(s) else (DEFECT if s > thr else NO_DEFECT)}
            for p, c, s in zip(paths, classes, scores)]


@runtime.scoped
def _evaluate(job: Job, fit: artifacts.Step, key: str, reporter: Reporter) -> tuple[dict[str, Any], artifacts.Provenance]:
    from osd.osr.thresholds import operating_points

    cfg = job.cfg
    paths, classes, source = defect_images(job)
    res = job.resources
    device = res.setup()
    detector, extractor, result = stage1_models(job, device, reporter)
    scores, _ = (score_images(detector, extractor, paths, job.stage1_sizes, device, reporter, "defect images") if paths
                 else (np.zeros(0), {}))
    thr = result.threshold
    normal = np.asarray(result.test_scores, dtype=float)
    metrics = evaluate(normal, scores, thr, cfg.stats.bootstrap, cfg.project.seed)
    per_class = {c: float(np.mean(scores[[k == c for k in classes]] > thr)) for c in sorted(set(classes))}
    points = operating_points(np.asarray(result.calibration_scores), normal, scores if paths else None)
    rows = (_rows(list(fit.payload["test"]), NO_DEFECT, [NO_DEFECT] * len(normal), normal, thr)
            + _rows([str(p) for p in paths], DEFECT, classes, scores, thr))
    prov = artifacts.provenance(cfg, "detection", DETECTION_ALGORITHM, key, ("stats", "neu.root"),
                                {"detector": fit.id}, compute=res.precision_identity("patchcore"))
    out = DetectionResult(metrics, result.acceptance, result.threshold_summary, per_class, points, rows, source,
                          result.stats.get("unit", "image"), provenance=prov)
    return out.payload(), prov


def _defects_key(job: Job) -> list[list[str]]:
    paths, classes, _ = defect_images(job)
    return [[p.name, c, artifacts.file_sha256(p)] for p, c in zip(paths, classes)]


def detection(job: Job, force: bool = False, reporter: Reporter | None = None) -> DetectionResult:
    """The detection study for ``cfg``'s seed: cached; writes ``detection/predictions.csv`` and the
    ``detection`` section of ``detection/metrics.json``."""
    cfg = job.cfg
    reporter = ensure(reporter)
    fit = stage1_fit_step(job, reporter=reporter)
    key = artifacts.cache_key(SECTION, DETECTION_ALGORITHM, fit.id, _defects_key(job), cfg.section("stats"),
                              cfg.project.seed)
    layout = job.layout
    step = artifacts.cached_step(layout.detection_evaluation, key, lambda: _evaluate(job, fit, key, reporter),
                                 force=force, on_wait=reporter.note)
    result = DetectionResult.from_payload(step.payload, cached=step.cached)
    artifacts.write_outputs(layout.detection_predictions, result.csv(), layout.detection_metrics,
                            SECTION, result.section())
    return result


def stored(layout: artifacts.Layout) -> DetectionResult | None:
    """The detection study on disk in ``layout`` (a seed's outputs), as it was computed (None when there is none)."""
    payload = artifacts.load(layout.detection_evaluation, None)
    return None if payload is None else DetectionResult.from_payload(payload, cached=True)

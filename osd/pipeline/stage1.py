"""Step ``patchcore fit``: memory bank from normal crops, threshold on calibration crops.

The unit of a stage-1 decision is one square crop of steel (Severstal crop or one whole NEU
image, each resized to ``patchcore.image_size``): a NEU image (200x200) is about the size of one
256-pixel Severstal crop. A normal image is therefore scored per crop, and the threshold and the
false-alarm rate are per crop.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.data.splits import rng_for
from osd.pipeline.data import NormalData, crops_of, normal_data
from osd.progress import Reporter, ensure

Sample = tuple[Path, tuple[int, int, int, int] | None]  # a file and a crop box (None = whole image)


def build_extractor(cfg: Config, device):
    """The patch feature extractor; seeded, so random-init weights are the same at fit and at test time."""
    import torch

    from osd.models.backbones import build
    from osd.patchcore.features import PatchFeatureExtractor

    pc = cfg.patchcore
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.project.seed)
        backbone = build(pc.backbone, pc.weights)
    return PatchFeatureExtractor(backbone, pc.layers, pc.reduce_dim, cfg.project.seed).to(device)


def crop_samples(cfg: Config, paths: Sequence[Path]) -> list[Sample]:
    return [(p, box) for p in paths for box in crops_of(cfg, p)]


def feature_batches(extractor, samples: Sequence[Sample], cfg: Config, device) -> Iterator[tuple[int, Any]]:
    """Yield (number of samples, (B,D,h,w) features) batch by batch; unreadable files are skipped."""
    import torch

    from osd.data.images import load_rgb
    from osd.data.tensors import normalize, pil_to_uint8
    from osd.errors import DataError

    size, bs = cfg.patchcore.image_size, cfg.patchcore.batch_size
    for s in range(0, len(samples), bs):
        batch = []
        for path, box in samples[s : s + bs]:
            try:
                img = load_rgb(path)
            except DataError:
                continue  # listed by `data check`; already warned when the data was indexed
            batch.append(pil_to_uint8(img.crop(box) if box else img, size))
        if not batch:
            continue
        with torch.inference_mode():
            yield len(batch), extractor(normalize(torch.stack(batch).to(device))).cpu()


def score_samples(bank, extractor, samples: Sequence[Sample], cfg: Config, device, reporter: Reporter | None,
                  label: str) -> np.ndarray:
    from osd.patchcore.features import to_patches

    scores = []
    with ensure(reporter).task(label, len(samples)) as task:
        for n, feats in feature_batches(extractor, samples, cfg, device):
            patches_per_image = feats.shape[2] * feats.shape[3]
            scores.append(bank.score_patches(to_patches(feats), patches_per_image).numpy())
            task.advance(n)
    return np.concatenate(scores) if scores else np.zeros(0)


@dataclass
class FitResult:
    stats: dict[str, Any]
    threshold: float
    acceptance: float
    calibration_scores: list[float]
    test_scores: list[float]
    false_alarm_rate: float
    cached: bool
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score_sign": "higher = more anomalous (nearest-neighbour patch distance)"}


def patchcore_key(cfg: Config, data: NormalData) -> str:
    return artifacts.cache_key("patchcore", cfg.section("patchcore"), cfg.section("normal"), cfg.project.seed,
                               data.fingerprint())


def _bank_paths(cfg: Config, data: NormalData) -> list[Path]:
    paths = list(data.split.bank)
    cap = cfg.patchcore.max_bank_images
    if len(paths) > cap:
        keep = sorted(rng_for(cfg.project.seed, "bank-cap").choice(len(paths), cap, replace=False))
        paths = [paths[i] for i in keep]
    return paths


def fit_bank(cfg: Config, samples: Sequence[Sample], device, reporter: Reporter | None = None):
    """Memory bank of the given crops: features streamed batch by batch, coreset on a projection."""
    import torch

    from osd.patchcore.model import build_memory_bank

    extractor = build_extractor(cfg, device)
    images = (feats for _, feats in feature_batches(extractor, samples, cfg, device))
    gen = torch.Generator().manual_seed(cfg.project.seed)
    bank, stats = build_memory_bank(images, cfg.patchcore.coreset_ratio, cfg.patchcore.projection_dim, gen,
                                    reporter, total=len(samples))
    return bank, extractor, stats


def fit_patchcore(cfg: Config, force: bool = False, reporter: Reporter | None = None) -> FitResult:
    """Fit (or load) the stage-1 detector and its threshold on calibration normals."""
    from osd import runtime
    from osd.models.backbones import describe_weights
    from osd.osr.thresholds import AcceptanceThreshold
    from osd.patchcore.model import MemoryBank

    reporter = ensure(reporter)
    data = normal_data(cfg)
    key = patchcore_key(cfg, data)
    layout = artifacts.Layout(cfg.output_dir)
    path = layout.patchcore / "patchcore.joblib"
    payload = None if force else artifacts.load(path, key)
    cached = payload is not None
    if payload is None:
        device = runtime.setup(cfg)
        runtime.seed_everything(cfg.project.seed)
        bank_paths = _bank_paths(cfg, data)
        bank_samples = crop_samples(cfg, bank_paths)
        reporter.note(f"PatchCore: {cfg.patchcore.backbone} ({describe_weights(cfg.patchcore.weights)} weights), "
                      f"{len(bank_paths)} bank images ({len(bank_samples)} crops), device {device}")
        start = time.perf_counter()
        tracemalloc.start()
        bank_t, extractor, stats = fit_bank(cfg, bank_samples, device, reporter)
        peak_py = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        bank = MemoryBank(bank_t, cfg.patchcore.num_neighbors, cfg.patchcore.search)
        cal_samples = crop_samples(cfg, data.split.calibration)
        test_samples = crop_samples(cfg, data.split.test)
        cal = score_samples(bank, extractor, cal_samples, cfg, device, reporter, "calibration normals")
        test = score_samples(bank, extractor, test_samples, cfg, device, reporter, "test normals")
        thr = AcceptanceThreshold(cfg.patchcore.acceptance).fit(cal)
        stats.update(
            source=data.source, bank_images=len(bank_paths), bank_images_available=len(data.split.bank),
            max_bank_images=cfg.patchcore.max_bank_images, bank_crops=len(bank_samples),
            calibration_images=len(data.split.calibration), calibration_crops=len(cal_samples),
            test_images=len(data.split.test), test_crops=len(test_samples),
            coreset_ratio=cfg.patchcore.coreset_ratio, fit_seconds=stats["extract_seconds"] + stats["select_seconds"],
            total_seconds=time.perf_counter() - start, python_peak_mb=peak_py / 2**20,
            weights=describe_weights(cfg.patchcore.weights), backbone=cfg.patchcore.backbone,
            image_size=cfg.patchcore.image_size, unit="crop",
        )
        payload = {
            "bank": bank_t, "threshold": thr, "calibration_scores": cal, "test_scores": test, "stats": stats,
            "calibration": [(str(p), b) for p, b in cal_samples], "test": [(str(p), b) for p, b in test_samples],
        }
        artifacts.save(path, key, payload, cfg.to_dict())
        artifacts.write_json(layout.patchcore / "fit_stats.json", stats)
        artifacts.write_json(layout.patchcore / "threshold.json", {
            "threshold": thr.threshold_, "acceptance": cfg.patchcore.acceptance, "n_calibration_crops": thr.n_samples_,
            "rule": "defect when score > threshold", "unit": "crop"})
        artifacts.write_json(layout.patchcore / "config.json", cfg.to_dict())
        artifacts.write_json(layout.patchcore / "scores.json", {
            "calibration": cal.tolist(), "test": test.tolist(), "threshold": thr.threshold_, "unit": "crop"})
    thr = payload["threshold"]
    test = np.asarray(payload["test_scores"])
    return FitResult(payload["stats"], thr.threshold_, cfg.patchcore.acceptance,
                     list(map(float, payload["calibration_scores"])), list(map(float, test)),
                     float(np.mean(test > thr.threshold_)) if test.size else float("nan"), cached, str(path))


def load_detector(cfg: Config, device, reporter: Reporter | None = None):
    """(MemoryBank, extractor, fit payload) of the fitted detector, fitting it first if needed."""
    from osd.patchcore.model import MemoryBank

    fit_patchcore(cfg, reporter=reporter)
    payload = artifacts.load(artifacts.Layout(cfg.output_dir).patchcore / "patchcore.joblib", None)
    bank = MemoryBank(payload["bank"], cfg.patchcore.num_neighbors, cfg.patchcore.search)
    return bank, build_extractor(cfg, device), payload

"""Stage 1 as a library: fitted and calibrated from explicit inputs (no project config), and rebuilt
from the settings a fit recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from osd.pipeline.job import Job


def _images(folder: Path, n: int, size: tuple[int, int], seed: int, spot: bool = False) -> tuple[Path, ...]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        a = (120 + rng.normal(0, 8, (size[1], size[0]))).clip(0, 255)
        if spot:
            a[10:30, 10:30] = 250
        p = folder / f"{i}.png"
        Image.fromarray(a.astype(np.uint8)).convert("RGB").save(p)
        out.append(p)
    return tuple(out)


def test_fit_stage1_from_explicit_inputs_scores_each_unit_and_sets_the_threshold_on_calibration(tmp_path: Path):
    import torchvision

    from osd.osr.thresholds import AcceptanceThreshold
    from osd.patchcore.features import PatchFeatureExtractor
    from osd.patchcore.fit import IMAGE, NormalParts, Stage1Plan, fit_stage1
    from osd.patchcore.model import PatchCore
    from osd.patchcore.stage1 import Stage1Sizes

    torch.manual_seed(0)
    extractor = PatchFeatureExtractor(torchvision.models.resnet18(), ["layer2", "layer3"], reduce_dim=16).eval()
    normals = NormalParts(_images(tmp_path / "bank", 4, (64, 64), 0), _images(tmp_path / "cal", 5, (64, 64), 1),
                          _images(tmp_path / "test", 3, (128, 64), 2))  # test: long images, cut into crops
    sizes = Stage1Sizes(image_size=64, batch_size=4, crop_size=64, crop_stride=64, dark_threshold=10,
                        max_dark_fraction=0.5)
    fit = fit_stage1(PatchCore(coreset_ratio=0.5, seed=0), extractor, normals, Stage1Plan(sizes, IMAGE, False, 0.8),
                     torch.device("cpu"))
    assert fit.calibration_ids == [str(p) for p in normals.calibration] and len(fit.test_scores) == 3
    assert fit.measured["bank_crops"] == 4 and fit.measured["calibration_units"] == 5
    assert fit.measured["test_crops"] == 0 and fit.measured["calibration_crops"] == 0  # the unit is an image
    want = AcceptanceThreshold(0.8, "x").fit(fit.calibration_scores).threshold_
    assert fit.threshold.threshold_ == pytest.approx(want)
    assert fit.indomain == {"available": False,
                            "reason": "no defective images with masks (normal.folder or none in train.csv)"}
    assert np.isfinite(fit.test_scores).all() and fit.skipped == {}


def test_a_part_without_crops_is_refused_before_any_feature_is_computed(tmp_path: Path):
    from osd.errors import DataError
    from osd.patchcore.fit import require_crops
    from osd.patchcore.stage1 import Stage1Sizes

    sizes = Stage1Sizes(64, 4, 64, 64, 10, 0.5)
    with pytest.raises(DataError, match=r"the 2 bank normal image\(s\) give 0 crops"):
        require_crops(sizes, {"bank": ([Path("a.png"), Path("b.png")], [])})


def test_the_spec_takes_the_settings_a_fit_recorded_over_the_project_file(tmp_path: Path):
    from osd.config import Config
    from osd.pipeline.detector import stage1_spec

    cfg = Config(base_dir=tmp_path).replace(**{"patchcore.layers": ["layer3"],
                                               "patchcore.num_neighbors": 1, "project.seed": 3})
    spec = stage1_spec(Job.of(cfg), {"patchcore.num_neighbors": 3, "project.seed": 7, "classifier.epochs": 1})
    assert (spec.num_neighbors, spec.seed, spec.layers) == (3, 7, ("layer3",))
    assert stage1_spec(Job.of(cfg)).num_neighbors == 1
    rel = stage1_spec(Job.of(cfg.replace(**{"patchcore.weights": "w.pth"})))
    assert rel.weights == str(tmp_path / "w.pth")  # a weights file is read from the project file's folder


def test_the_in_domain_test_scores_defective_images_in_the_unit_of_the_threshold(tmp_path: Path):
    """Per image, a defective image is scored whole (as predict scores it) against the normal test
    images, never its crops against image scores; per crop, crops against crops."""
    import torchvision

    from osd.patchcore.features import PatchFeatureExtractor
    from osd.patchcore.fit import CROP, IMAGE, DefectParts, NormalParts, Stage1Plan, fit_stage1
    from osd.patchcore.model import PatchCore
    from osd.patchcore.stage1 import Stage1Sizes

    torch.manual_seed(0)
    extractor = PatchFeatureExtractor(torchvision.models.resnet18(), ["layer2", "layer3"], reduce_dim=16).eval()
    normals = NormalParts(_images(tmp_path / "bank", 4, (64, 64), 0), _images(tmp_path / "cal", 5, (64, 64), 1),
                          _images(tmp_path / "test", 3, (64, 64), 2))
    bad = _images(tmp_path / "bad", 2, (128, 64), 3, spot=True)  # long strips of two crops each
    defects = DefectParts(bad, {p.name: ("1 400",) for p in bad}, 0.01)
    sizes = Stage1Sizes(image_size=64, batch_size=4, crop_size=64, crop_stride=64, dark_threshold=10,
                        max_dark_fraction=0.5)
    per_image = fit_stage1(PatchCore(coreset_ratio=0.5, seed=0), extractor, normals,
                           Stage1Plan(sizes, IMAGE, False, 0.8), torch.device("cpu"), defects=defects).indomain
    assert per_image["unit"] == "image" and per_image["defect_images"] == 2 and per_image["normal_test_images"] == 3
    # the bright spots separate perfectly: AUROC 1 and no bootstrap interval (every replicate is 1)
    assert "defect_crops" not in per_image and "auroc_ci95" in per_image
    per_crop = fit_stage1(PatchCore(coreset_ratio=0.5, seed=0), extractor, normals,
                          Stage1Plan(sizes, CROP, False, 0.8), torch.device("cpu"), defects=defects).indomain
    assert per_crop["unit"] == "crop" and per_crop["defect_crops"] + per_crop["clean_crops_of_defective_images"] == 4

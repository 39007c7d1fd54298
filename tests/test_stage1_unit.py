"""Stage 1's threshold is set in the unit it is applied in (the answer issue, point 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from osd import config
from osd.cli.app import app
from osd.pipeline.job import Job

runner = CliRunner()
TINY = {"patchcore.backbone": "resnet18", "patchcore.weights": "none", "patchcore.image_size": 32,
        "normal.crop_size": 40, "normal.crop_stride": 40, "patchcore.max_bank_images": 40}


def _line(root: Path, normals: int, shape: tuple[int, int]) -> tuple[Path, Path]:
    from test_three_outcome import line

    return line(root, per_class=4, normals=normals, normal_shape=shape)


def _fit(tmp_path: Path, normals: int, shape: tuple[int, int], in_domain: bool):
    from osd.pipeline.detector import stage1_fit

    defects, good = _line(tmp_path, normals, shape)
    p = tmp_path / "p"
    r = runner.invoke(app, ["init", str(p), "--neu", str(defects), "--normal", str(good),
                            "--in-domain" if in_domain else "--cross-domain"])
    assert r.exit_code == 0, r.output
    return stage1_fit(Job.of(config.load(p).replace(**TINY)))


@pytest.mark.slow
def test_long_own_normal_images_are_calibrated_per_image_and_pass_at_the_target(tmp_path: Path):
    # 600 long good parts of 4 crops each: per crop, an image would be flagged up to 1 - 0.95^4 of the time
    fit = _fit(tmp_path, 600, (40, 160), in_domain=True)
    s = fit.stats
    assert s["unit"] == "image" and s["calibration_units"] == s["calibration_images"] == 90
    summary = fit.threshold_summary
    assert summary["n"] == 90  # the interval counts images, the independent units, not correlated crops
    lo, hi = summary["acceptance_ci95"]
    passed = 1 - fit.false_alarm_rate
    assert s["test_units"] == s["test_images"] and lo <= passed <= hi, (lo, passed, hi)
    # every operating point that 90 calibration images allow: the held-out pass rate inside its interval
    from osd.osr.thresholds import operating_points

    pts = operating_points(np.asarray(fit.calibration_scores), np.asarray(fit.test_scores), None)
    usable = [p for p in pts if p["threshold"] is not None]
    assert [p["target"] for p in usable] == [0.90, 0.95]
    for p in usable:
        assert p["acceptance_ci95"][0] <= p["test_accepted"] <= p["acceptance_ci95"][1], p


def test_the_neu_severstal_study_keeps_its_crop_unit(tmp_path: Path):
    fit = _fit(tmp_path, 12, (40, 160), in_domain=False)
    assert fit.stats["unit"] == "crop"
    assert fit.threshold_summary["n"] == fit.stats["calibration_crops"] > fit.stats["calibration_images"]


def test_the_unit_is_part_of_the_fit_key_only_where_it_is_an_image(tmp_path: Path):
    from osd.pipeline.data import normal_data
    from osd.pipeline.detector import patchcore_key

    defects, good = _line(tmp_path, 12, (40, 160))
    p = tmp_path / "p"
    assert runner.invoke(app, ["init", str(p), "--neu", str(defects), "--normal", str(good), "--in-domain"]).exit_code == 0
    cfg = config.load(p).replace(**TINY)
    inside = patchcore_key(Job.of(cfg), normal_data(cfg))
    outside = cfg.replace(**{"normal.in_domain": False})
    assert patchcore_key(Job.of(outside), normal_data(outside)) != inside


def test_data_check_says_small_normal_images_once_with_a_count(tmp_path: Path):
    defects, good = _line(tmp_path, 9, (30, 30))  # every normal image is smaller than the 40 px crop
    p = tmp_path / "p"
    assert runner.invoke(app, ["init", str(p), "--neu", str(defects), "--normal", str(good)]).exit_code == 0
    r = runner.invoke(app, ["data", "check", "-p", str(p), *[x for k, v in TINY.items() if k.startswith("normal")
                                                                for x in ("--set", f"{k}={v}")]])
    assert r.output.count("smaller than normal.crop_size") == 1, r.output
    assert "9 normal image(s) are smaller" in r.output and "--verbose lists all" in r.output
    v = runner.invoke(app, ["data", "check", "-p", str(p), "--verbose", "--set", "normal.crop_size=40"])
    assert v.output.count("30x30") >= 9


def test_split_help_names_the_splits_section():
    r = runner.invoke(app, ["osr", "--help"])
    assert "splits.NAME" in r.output


def test_operating_points_are_set_on_fitting_scores_and_say_when_there_are_too_few():
    from osd.osr.thresholds import AcceptanceThreshold, operating_points, scores_needed

    assert [scores_needed(a) for a in (0.90, 0.95, 0.99, 0.999)] == [9, 19, 99, 999]
    rng = np.random.default_rng(0)
    fit, normal, defect = rng.normal(0, 1, 200), rng.normal(0, 1, 2000), rng.normal(3, 1, 500)
    pts = operating_points(fit, normal, defect)
    assert [p["target"] for p in pts] == [0.90, 0.95, 0.99, 0.999]
    p95 = pts[1]
    assert p95["threshold"] == AcceptanceThreshold(0.95).fit(fit).threshold_  # the same rule as the study's
    assert p95["acceptance_ci95"][0] <= p95["test_accepted"] <= p95["acceptance_ci95"][1]
    assert pts[0]["test_rejected"] > pts[1]["test_rejected"] > pts[2]["test_rejected"]  # stricter: fewer flagged
    assert pts[3]["threshold"] is None and "999 needed, 200 here" in pts[3]["note"]

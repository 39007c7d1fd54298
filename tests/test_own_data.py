"""Issue 12: a user's own defect classes, named splits, and data that moves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from osd import config
from osd.cli.app import app
from osd.errors import DataError
from osd.pipeline.job import Job

runner = CliRunner()
CLASSES = ["Blowhole", "Break", "Crack", "Fray", "Uneven"]


def own_data(root: Path, per_class: int = 10, sizes=((40, 40),)) -> Path:
    rng = np.random.default_rng(0)
    for ci, c in enumerate(CLASSES):
        d = root / c / "Imgs"  # nested one level deeper, masks beside the images
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            a = rng.normal(120, 10, (h, w)).clip(0, 255).astype(np.uint8)
            a[:, ci * 5 : ci * 5 + 3] = 30
            Image.fromarray(a).save(d / f"{i}.jpg")
            Image.fromarray(((a < 60) * 255).astype(np.uint8)).save(d / f"{i}.png")
    return root


TINY_SETS = ["--set", "classifier.arch=resnet18", "--set", "classifier.weights=none", "--set",
             "classifier.image_size=32", "--set", "classifier.epochs=1", "--set", "stats.bootstrap=10",
             "--set", "patchcore.backbone=resnet18", "--set", "patchcore.weights=none", "--set",
             "patchcore.image_size=32", "--set", "normal.crop_size=40", "--set", "normal.crop_stride=40",
             "--set", "bench.runs=1", "--set", "bench.warmup=0"]


def test_init_writes_splits_for_own_classes_and_run_all_runs_without_edits(tmp_path: Path):
    """Class folders that are not NEU's: ``osd init`` then ``osd run-all``, osd.toml untouched."""
    data = own_data(tmp_path / "data")
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(data), "--unknown-per-split", "2"])
    assert r.exit_code == 0, r.output
    toml = (tmp_path / "p" / "osd.toml").read_text()
    cfg = config.load(tmp_path / "p")
    assert cfg.split_names == ["a", "b", "c"]
    unknown = sorted(c for s in cfg.split_names for c in cfg.split(s).unknown)
    assert unknown == sorted(CLASSES)  # each class unknown exactly once
    assert all(len(cfg.split(s).known) >= 2 for s in cfg.split_names)
    check = json.loads(runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p"), "--json"]).stdout)
    assert check["neu_counts"] == {c: 10 for c in CLASSES}  # masks are not images, Imgs is not a class
    assert any("mask file(s)" in n for n in check["notes"])
    # no normal images: the one-stage study runs on every split; the cascade is skipped, and said so
    r = runner.invoke(app, ["run-all", "-p", str(tmp_path / "p"), *TINY_SETS, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["two_stage"] is False and not out["failed"]
    assert any("only the one-stage study ran" in n for n in out["notes"])
    rows = out["report"]["rows"]
    assert {(row["split"], row["approach"]) for row in rows} >= {(s, "one_stage_mahalanobis") for s in "abc"}
    assert not any(row["approach"].startswith("cascade") for row in rows)
    assert (tmp_path / "p" / "osd.toml").read_text() == toml


def test_own_classes_with_a_folder_of_normal_images_run_both_approaches(tmp_path: Path):
    data = own_data(tmp_path / "data")
    rng = np.random.default_rng(3)
    good = tmp_path / "good"
    good.mkdir()
    for i in range(8):
        Image.fromarray(rng.normal(120, 10, (40, 80)).clip(0, 255).astype(np.uint8)).save(good / f"g{i}.png")
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(data), "--normal", str(good)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["run-all", "-p", str(tmp_path / "p"), "--splits", "a", *TINY_SETS, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["two_stage"] is True
    assert {row["approach"] for row in out["report"]["rows"] if row["split"] == "a"} >= {
        "one_stage_mahalanobis", "cascade_strict", "cascade_ignore_no_defect"}
    # the report of a user's own line names no data set it does not use
    import re

    page = re.sub(r'src="data:image/png;base64,[^"]+"', "", (tmp_path / "p" / "outputs" / "report.html").read_text())
    assert "Severstal" not in page and not re.search(r"\bNEU\b", page)


def test_moving_the_data_folder_does_not_retrain(tiny_project: Path):
    p = str(tiny_project)
    assert runner.invoke(app, ["osr", "-p", p, "--split", "a"]).exit_code == 0
    shutil.move(tiny_project / "neu", tiny_project / "moved")
    toml = tiny_project / "osd.toml"
    toml.write_text(toml.read_text().replace('root = "neu"', 'root = "moved"'))
    r = runner.invoke(app, ["embed", "-p", p, "--split", "a", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cached"] is True
    r = runner.invoke(app, ["osr", "-p", p, "--split", "a", "--json"])
    rows = (tiny_project / "outputs" / "split_a" / "osr" / "predictions.csv").read_text()
    assert str(tiny_project / "moved") in rows and str(tiny_project / "neu") not in rows


def test_a_split_without_test_images_is_an_error_before_training(tmp_path: Path):
    data = own_data(tmp_path / "data", per_class=2)
    assert runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(data)]).exit_code == 0
    cfg = config.load(tmp_path / "p")

    with pytest.raises(DataError, match="split a: .*no"):
        Job.of(cfg).manifest("a")
    r = runner.invoke(app, ["train", "-p", str(tmp_path / "p"), "--split", "a"])
    assert r.exit_code == 1 and "split a" in r.output and not (tmp_path / "p" / "outputs" / "split_a" / "classifier").exists()


def test_many_image_sizes_are_summarised(tmp_path: Path):
    data = own_data(tmp_path / "data", sizes=[(30 + i, 40 + 2 * i) for i in range(10)])
    assert runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(data)]).exit_code == 0
    r = runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p"), "--json"])
    sm = json.loads(r.stdout)["image_size_summary"]
    assert sm["distinct"] == 10 and sm["width"] == {"min": 30, "median": 34.5, "max": 39}
    text = runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p")]).output
    assert "10 distinct" in text

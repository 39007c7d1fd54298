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


def test_init_writes_splits_for_own_classes_and_the_study_runs(tmp_path: Path):
    data = own_data(tmp_path / "data")
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(data), "--unknown-per-split", "2"])
    assert r.exit_code == 0, r.output
    cfg = config.load(tmp_path / "p")
    assert cfg.split_names == ["a", "b", "c"]
    unknown = sorted(c for s in cfg.split_names for c in cfg.split(s).unknown)
    assert unknown == sorted(CLASSES)  # each class unknown exactly once
    assert all(len(cfg.split(s).known) >= 2 for s in cfg.split_names)
    check = json.loads(runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p"), "--json"]).stdout)
    assert check["neu_counts"] == {c: 10 for c in CLASSES}  # masks are not images, Imgs is not a class
    assert any("mask file(s)" in n for n in check["notes"])
    tiny = ["--set", "classifier.arch=resnet18", "--set", "classifier.weights=none", "--set",
            "classifier.image_size=32", "--set", "classifier.epochs=1", "--set", "stats.bootstrap=10"]
    r = runner.invoke(app, ["osr", "-p", str(tmp_path / "p"), "--split", "c", *tiny, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["classes"] == cfg.split("c").known


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
    from osd.pipeline.data import split_manifest

    with pytest.raises(DataError, match="split a: .*no"):
        split_manifest(cfg, "a")
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

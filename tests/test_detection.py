"""Issue 31: good parts and bad parts. The detection study for zero or one defect class, its numbers,
operating points, predict and export on such a project, and the open-set study left as it was for two."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from osd.cli.app import app

runner = CliRunner()
TINY = ["--set", "patchcore.backbone=resnet18", "--set", "patchcore.weights=none", "--set", "patchcore.image_size=32",
        "--set", "stats.bootstrap=20", "--set", "normal.crop_size=64", "--set", "normal.crop_stride=64"]


def parts(root: Path, good: int = 30, bad: dict[str, int] | None = None) -> tuple[Path, Path]:
    """A folder of good parts (noise) and one folder per defect type (a dark square on the noise)."""
    rng = np.random.default_rng(0)
    (root / "good").mkdir(parents=True)
    for i in range(good):
        Image.fromarray(rng.normal(120, 10, (64, 64)).clip(0, 255).astype(np.uint8)).save(root / "good" / f"g{i}.png")
    for name, n in (bad or {}).items():
        (root / "bad" / name).mkdir(parents=True)
        for i in range(n):
            a = rng.normal(120, 10, (64, 64))
            a[20:40, 20:40] = 30
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(root / "bad" / name / f"b{i}.png")
    return root / "good", root / "bad"


def cli(*args: str) -> dict:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_detection_metrics_values():
    from osd.detection import evaluate

    m = evaluate([0.1, 0.2, 0.3, 0.9], [0.8, 1.0, 0.05], threshold=0.5, n_boot=200)
    assert m.values["normal_pass_rate"] == 0.75 and m.values["detection_rate"] == pytest.approx(2 / 3)
    assert m.values["auroc"] == pytest.approx(7 / 12)  # defect-above-normal pairs
    # four test normals cannot place a 90% pass point (it needs 10; with 4 it is their largest score, the
    # same 100% point every row would repeat): not read, and said so
    assert "detection_at_pass_0.9" not in m.values and "detection_at_pass_0.9" in m.not_measured
    lo, hi = m.intervals95["normal_pass_rate"]
    assert (lo, hi) == pytest.approx((0.1941, 0.9937), abs=1e-3)  # exact Clopper-Pearson of 3 / 4
    ten = evaluate([0.1 * i for i in range(10)], [0.85, 1.0, 0.05], threshold=0.5, n_boot=50)
    # the 90% pass point passes nine of ten normals (k = 9: above 0.8): two defects above it
    assert ten.values["detection_at_pass_0.9"] == pytest.approx(2 / 3)
    assert "detection_at_pass_0.95" not in ten.values  # 20 needed
    alone = evaluate([0.1, 0.2, 0.9], [], threshold=0.5, n_boot=50)
    assert alone.values == {"normal_pass_rate": pytest.approx(2 / 3)}
    assert set(alone.not_measured) == {"detection_rate", "auroc", "aupr", "detection_at_pass_0.9",
                                       "detection_at_pass_0.95", "detection_at_pass_0.99"}


def test_one_defect_class_runs_the_detection_study_end_to_end(tmp_path: Path):
    good, bad = parts(tmp_path, bad={"crack": 8})
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(bad / "crack"), "--normal", str(good)])
    assert r.exit_code == 0 and "detection study" in r.output, r.output
    p = str(tmp_path / "p")
    res = cli("run-all", "-p", p, *TINY)
    assert not res.get("failed")
    m = json.loads((tmp_path / "p" / "outputs" / "detection" / "metrics.json").read_text())["detection"]
    assert m["n_normal"] == 5 and m["n_defect"] == 8 and m["detection_rate"] == 1.0 and m["auroc"] == 1.0
    assert m["detection_rate_per_class"] == {"crack": 1.0}
    assert [op["target"] for op in m["operating_points"]] == [0.9, 0.95, 0.99, 0.999]
    assert "too few images" in m["operating_points"][0]["note"]  # 4 calibration images
    html = (tmp_path / "p" / "outputs" / "report.html").read_text()
    assert "Operating points" in html and "0.30000000000000004" not in html
    # the figures an engineer looks at: the score distributions with the thresholds, and the ROC curve
    assert 'alt="scores"' in html and 'alt="roc"' in html
    assert (tmp_path / "p" / "outputs" / "detection" / "plots" / "scores.png").is_file()
    # 8 of 8 bad parts flagged: an exact interval, never the bootstrap's zero-width [1.000, 1.000]
    lo, hi = m["intervals95"]["detection_rate"]
    assert lo == pytest.approx(0.6306, abs=1e-3) and hi == 1.0 and "flags 1.000 [0.631, 1.000]" in html
    summary = list(csv.DictReader((tmp_path / "p" / "outputs" / "summary.csv").open()))
    assert summary and not (tmp_path / "p" / "outputs" / "split_a").exists()  # no classifier was trained

    rows = cli("predict", str(bad / "crack"), "-p", p, *TINY)["rows"]
    assert len(rows) == 8 and {r["decision"] for r in rows} == {"defect"}
    assert all(r["stage1_score"] > r["stage1_threshold"] for r in rows)
    goods = cli("predict", str(good), "-p", p, *TINY)["rows"]
    assert {r["decision"] for r in goods} <= {"no_defect", "defect"} and any(r["decision"] == "no_defect" for r in goods)

    pytest.importorskip("onnxruntime")
    exp = cli("export", "-p", p, *TINY)
    assert exp["parity"]["ok"] and "stage1.onnx" in exp["files"]
    onnx_rows = cli("predict", str(bad / "crack"), "-p", p, "--engine", "onnx", *TINY)["rows"]
    assert [r["decision"] for r in onnx_rows] == [r["decision"] for r in rows]


def test_acceptance_rethresholds_without_refitting_and_predict_uses_it(tmp_path: Path):
    good, bad = parts(tmp_path, good=60, bad={"crack": 4})
    assert runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(bad / "crack"),
                               "--normal", str(good)]).exit_code == 0
    p = str(tmp_path / "p")
    first = cli("patchcore", "fit", "-p", p, *TINY)
    second = cli("patchcore", "fit", "-p", p, "--acceptance", "0.5", *TINY)
    assert "acceptance = 0.5" in (tmp_path / "p" / "osd.toml").read_text()
    assert second["stats"]["thresholded_anew_from_acceptance"] == 0.95
    assert second["stats"]["total_seconds"] == first["stats"]["total_seconds"]  # the stored fit, not a new one
    assert second["threshold"] < first["threshold"]
    scores = np.sort(second["calibration_scores"])
    k = int(np.ceil((len(scores) + 1) * 0.5))
    assert second["threshold"] == pytest.approx(scores[k - 1])
    rows = cli("predict", str(good), "-p", p, *TINY)["rows"]
    assert all(r["stage1_threshold"] == pytest.approx(second["threshold"]) for r in rows)
    # a detection study has no tau or kappa: calibrate says so and writes nothing
    r = runner.invoke(app, ["calibrate", "-p", p, "--acceptance", "0.9"])
    assert r.exit_code == 1 and "patchcore fit --acceptance" in r.output
    assert "acceptance = 0.9" not in (tmp_path / "p" / "osd.toml").read_text().splitlines()


def test_no_defect_folder_measures_the_pass_rate_and_says_what_it_cannot(tmp_path: Path):
    good, _ = parts(tmp_path)
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--normal", str(good)])
    assert r.exit_code == 0 and "no defect folder" in r.output, r.output
    res = cli("run-all", "-p", str(tmp_path / "p"), *TINY)
    m = json.loads((tmp_path / "p" / "outputs" / "detection" / "metrics.json").read_text())["detection"]
    assert m["n_defect"] == 0 and 0.0 <= m["normal_pass_rate"] <= 1.0 and "auroc" in m["not_measured"]
    answer = json.dumps(res["report"])
    assert "cannot be measured" in answer


def test_two_defect_classes_keep_the_open_set_refusal_and_point_at_detect_only(tmp_path: Path):
    good, bad = parts(tmp_path, bad={"crack": 6, "dent": 6})
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(bad), "--normal", str(good)])
    assert r.exit_code == 1 and "--detect-only" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["init", str(tmp_path / "q"), "--neu", str(bad), "--normal", str(good), "--detect-only"])
    assert r.exit_code == 0 and "2 defect class(es): crack, dent" in r.output, r.output
    assert 'study = "detection"' in (tmp_path / "q" / "osd.toml").read_text()


def test_calibrate_acceptance_is_written_and_used_without_retraining(tiny_project: Path):
    p = str(tiny_project)
    first = cli("calibrate", "-p", p, "--split", "a")
    model = tiny_project / "outputs" / "split_a" / "classifier" / "model.npz"
    stamp = model.stat().st_mtime_ns
    second = cli("calibrate", "-p", p, "--split", "a", "--acceptance", "0.5")
    assert "acceptance = 0.5" in (tiny_project / "osd.toml").read_text().splitlines()
    assert second["acceptance"] == 0.5 and second["tau"] < first["tau"] and not second["cached"]
    assert model.stat().st_mtime_ns == stamp  # the classifier was not trained again
    img = str(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    rows = cli("predict", img, "-p", p, "--split", "a", "--approach", "one-stage")["rows"]
    assert rows[0]["tau"] == pytest.approx(second["tau"])


def test_a_held_out_pass_count_the_calibration_cannot_explain_is_said_in_words():
    """Issue 48, item 9: 188 of 196 calibration good parts accepted, 176 of 196 held-out ones passed: the
    beta-binomial predicts 178 to 194 (p = 0.015); the answer says the two sets look unlike each other."""
    from osd.calibration_check import check_words, predictive_check

    c = predictive_check(176, 196, 188, 196)
    assert (c.low, c.high) == (178, 194) and c.p_value == pytest.approx(2 * 0.014685, abs=2e-4) and not c.agrees
    assert "176 of 196 passed, fewer than the 178 to 194" in check_words(c)
    ok = predictive_check(186, 196, 188, 196)
    assert ok.agrees and check_words(ok) is None
    assert predictive_check(5, 0, 188, 196) is None and predictive_check(5, 10, 0, 196) is None

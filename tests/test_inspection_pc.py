"""Issue 40: rough edges on the inspection PC. Each error names the real cause (and the folder the user
gave), and a refused command writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ok
from osd.cli.app import app
from osd.pipeline.job import Job

runner = CliRunner()


def _one_line(r) -> str:
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    return " ".join(r.output.split())


def test_a_damaged_model_card_is_named_and_the_hint_names_the_users_folder(tiny_project: Path):
    pytest.importorskip("onnxruntime")
    p, exp = str(tiny_project), tiny_project / "exp"
    ok("calibrate", "-p", p, "--split", "a")
    ok("export", "-p", p, "--split", "a", "--approach", "one-stage", "--out", str(exp))
    img = str(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    args = ["predict", img, "-p", p, "--split", "a", "--approach", "one-stage", "--engine", "onnx",
            "--export-dir", str(exp)]
    (exp / "model_card.json").write_text('{"classes": [')
    line = _one_line(runner.invoke(app, args))
    assert "model card is damaged" in line and "no ONNX export" not in line and "warning" not in line, line
    assert f"osd export --split a --out {exp}" in line
    (exp / "model_card.json").unlink()
    line = _one_line(runner.invoke(app, args))
    assert "no ONNX export" in line and f"osd export --split a --out {exp}" in line


@pytest.mark.parametrize("value", ["1.5", "1", "0", "-0.2"])
def test_every_out_of_range_acceptance_gets_one_line_and_one_exit_code(tiny_project: Path, value: str):
    before = (tiny_project / "osd.toml").read_text()
    for args in (["patchcore", "fit"], ["calibrate", "--split", "a"]):
        line = _one_line(runner.invoke(app, [*args, "-p", str(tiny_project), "--acceptance", value]))
        assert f"--acceptance {float(value):g}: must be above 0 and below 1" in line
    assert (tiny_project / "osd.toml").read_text() == before  # nothing written


def test_an_empty_set_key_asks_for_key_value(tiny_project: Path):
    line = _one_line(runner.invoke(app, ["train", "-p", str(tiny_project), "--split", "a", "--set", "=3"]))
    assert "expected KEY=VALUE" in line and "unknown setting" not in line


def test_an_empty_normal_folder_is_refused_at_init(tmp_path: Path):
    from conftest import write_neu

    neu = write_neu(tmp_path / "neu", "folders", per_class=3)
    (tmp_path / "good").mkdir()
    line = _one_line(runner.invoke(app, ["init", str(tmp_path / "pe"), "--neu", str(neu), "--normal",
                                         str(tmp_path / "good")]))
    assert "holds no images" in line and not (tmp_path / "pe").exists()


@pytest.mark.parametrize("garbage", ['{"osr": {garbage', "[]"])
def test_a_damaged_metrics_json_is_rebuilt_with_every_cached_section_and_one_warning(tiny_project: Path,
                                                                                     garbage: str):
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    ok("cascade", "-p", p, "--split", "a")
    metrics = tiny_project / "outputs" / "split_a" / "metrics.json"
    before = json.loads(metrics.read_text())
    metrics.write_text(garbage)
    r = runner.invoke(app, ["cascade", "-p", p, "--split", "a"])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning") == 1 and "kept as metrics.json.corrupt-" in " ".join(r.output.split())
    after = json.loads(metrics.read_text())
    assert {"osr", "cascade"} <= set(after) and after["osr"] == before["osr"]
    assert list(metrics.parent.glob("metrics.json.corrupt-*"))  # nothing lost


def test_predict_out_a_folder_is_refused_before_predicting(tiny_project: Path):
    img = str(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    line = _one_line(runner.invoke(app, ["predict", img, "-p", str(tiny_project), "--out", str(tiny_project)]))
    assert "a folder; give a CSV file's path" in line


def test_an_inverted_file_without_faiss_is_refused_when_the_config_loads(tiny_project: Path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a))
    line = _one_line(runner.invoke(app, ["patchcore", "fit", "-p", str(tiny_project), "--set",
                                         "patchcore.search=ivf"]))
    assert "patchcore.search = ivf: needs faiss" in line
    assert not (tiny_project / "outputs").exists()


def test_one_defect_class_without_normal_images_points_at_normal(tmp_path: Path):
    from conftest import write_neu

    neu = write_neu(tmp_path / "neu", "folders", per_class=3, classes=("dent",))
    line = _one_line(runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(neu)]))
    assert "--normal DIR" in line


def test_a_model_a_full_disk_never_wrote_leaves_no_history_or_config_beside_it(tiny_project: Path, monkeypatch):
    import errno

    from osd import config
    from osd.artifacts import cache
    from osd.artifacts.layout import Layout
    from osd.errors import OsdError
    from osd.pipeline.train import trained

    real = cache.save

    def full(path, *a, **k):
        if Path(path).name.startswith("model"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(cache, "save", full)
    cfg = config.load(tiny_project)
    with pytest.raises((OSError, OsdError)):
        trained(Job.of(cfg), "a")
    layout = Layout(cfg.output_dir)
    assert not layout.history("a").exists() and not layout.classifier_config("a").exists()
    monkeypatch.setattr(cache, "save", real)
    trained(Job.of(cfg), "a")  # the disk has room again: the model, then its readable files
    assert layout.history("a").is_file() and layout.classifier_config("a").is_file()
    assert not layout.checkpoint("a").exists()

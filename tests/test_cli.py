import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_neu, write_severstal
from osd.cli.app import app

runner = CliRunner()
COMMANDS = ["init", "data", "train", "embed", "calibrate", "osr", "patchcore", "cascade", "bench", "report", "run-all"]


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for c in COMMANDS:
        assert c in result.output


def test_help_does_not_import_torch():
    code = "import sys; from osd.cli import app; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_init_writes_a_loadable_file_and_refuses_to_overwrite(tmp_path: Path):
    neu = write_neu(tmp_path / "neu", "neu-cls")
    sev = write_severstal(tmp_path / "sev")
    proj = tmp_path / "proj"
    r = runner.invoke(app, ["init", str(proj), "--neu", str(neu), "--severstal", str(sev)])
    assert r.exit_code == 0, r.output
    text = (proj / "osd.toml").read_text()
    assert "# torchvision classification model" in text and 'root = "../neu"' in text
    assert (proj / "data" / "README.md").is_file()
    r = runner.invoke(app, ["init", str(proj)])
    assert r.exit_code == 1 and "already exists" in r.output
    assert runner.invoke(app, ["init", str(proj), "--force"]).exit_code == 0


@pytest.mark.parametrize("layout", ["neu-cls", "neu-det", "kaggle"])
@pytest.mark.parametrize("fmt", ["current", "old"])
def test_data_check_on_each_layout(tmp_path: Path, layout: str, fmt: str):
    neu = write_neu(tmp_path / "neu", layout)
    sev = write_severstal(tmp_path / "sev", fmt)
    runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(neu), "--severstal", str(sev)])
    r = runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["neu_counts"] == {c: 6 for c in report["neu_counts"]} and len(report["neu_counts"]) == 6
    assert report["normal"]["normal_images"] == 6 and report["normal"]["defective_images"] == 2
    assert report["normal"]["csv_format"] == fmt
    assert (tmp_path / "p" / "outputs" / "split_a" / "split_manifest.csv").is_file()


def test_data_check_fails_on_missing_root(tmp_path: Path):
    (tmp_path / "osd.toml").write_text('[neu]\nroot = "nowhere"\n')
    r = runner.invoke(app, ["data", "check", "-p", str(tmp_path)])
    assert r.exit_code == 1
    assert "nowhere: NEU folder not found" in r.output


def test_config_error_is_one_line_without_traceback(tmp_path: Path):
    (tmp_path / "osd.toml").write_text("[classifier]\nepoch = 3\n")
    r = runner.invoke(app, ["train", "-p", str(tmp_path)])
    assert r.exit_code == 1
    assert "classifier.epoch: unknown setting; did you mean 'classifier.epochs'?" in r.output
    assert "Traceback" not in r.output


def test_unavailable_device_is_a_clear_error(tiny_project: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = runner.invoke(app, ["bench", "-p", str(tiny_project), "--device", "cuda"])
    assert r.exit_code == 1 and "CUDA is not available" in r.output


def test_unreadable_image_is_listed_by_check_and_skipped_by_pipelines(tiny_project: Path):
    bad = tiny_project / "neu" / "IMAGES" / "crazing_99.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    r = runner.invoke(app, ["data", "check", "-p", str(tiny_project), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [u["path"] for u in report["unreadable"]] == [str(bad)]
    assert report["neu_counts"]["crazing"] == 10

"""Rough edges found tried as a new user would (the 'nothing silently wrong' issue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from osd.cli.app import app
from osd.pipeline.job import Job

runner = CliRunner()


def test_a_failed_init_leaves_no_folder_behind(tmp_path: Path):
    one = tmp_path / "defects" / "crack"
    one.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("L", (20, 20), 100 + i).save(one / f"{i}.png")
    target = tmp_path / "proj"
    r = runner.invoke(app, ["init", str(target), "--neu", str(tmp_path / "defects")])
    assert r.exit_code != 0
    assert not target.exists()
    # and the message says what is missing, not which option failed
    assert "1 defect class (crack) found" in r.output and "at least 3" in r.output
    assert "--unknown-per-split" not in r.output and "1 classes" not in r.output


def test_an_absent_device_names_the_setting():
    import torch

    from osd.errors import DeviceError
    from osd.runtime import resolve_device

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(DeviceError, match=r"^project.device = cuda"):
        resolve_device("cuda")


def _neu_named_folders(root: Path, folders: dict[str, str], per_class: int = 8) -> Path:
    """Class folders whose files carry NEU names: folder -> the NEU class in the file names."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, (folder, neu) in enumerate(folders.items()):
        d = root / folder
        d.mkdir(parents=True)
        for i in range(1, per_class + 1):
            a = rng.normal(120, 10, (32, 32)).clip(0, 255).astype(np.uint8)
            a[:, k * 5 : k * 5 + 3] = 20
            Image.fromarray(a).save(d / f"{neu}_{i}.jpg")
    return root


def test_four_neu_class_folders_get_their_own_splits_and_a_clean_data_check(tmp_path: Path):
    from conftest import write_severstal
    from osd import config

    four = {c: c for c in ("crazing", "inclusion", "patches", "scratches")}
    neu = _neu_named_folders(tmp_path / "neu", four, per_class=20)
    sev = write_severstal(tmp_path / "sev")
    p = tmp_path / "p"
    r = runner.invoke(app, ["init", str(p), "--neu", str(neu), "--severstal", str(sev)])
    assert r.exit_code == 0, r.output
    cfg = config.load(p)
    assert cfg.split_names == ["a", "b"]
    assert {c for s in cfg.split_names for c in cfg.split(s).known + cfg.split(s).unknown} == set(four)
    check = runner.invoke(app, ["data", "check", "-p", str(p)])
    assert check.exit_code == 0, check.output
    assert "class folder" in check.output  # says which labelling rule it applied


def test_the_folder_a_user_made_is_the_label_not_the_file_name(tmp_path: Path):
    from osd.data.neu import index_neu

    root = _neu_named_folders(tmp_path / "neu", {"alpha": "crazing", "beta": "inclusion", "gamma": "patches"})
    idx = index_neu(root)
    assert idx.classes == ["alpha", "beta", "gamma"] and idx.layout == "class-folders"
    assert "folder" in idx.label_rule
    # NEU's own flat layout still reads the file names
    flat = tmp_path / "flat" / "IMAGES"
    flat.mkdir(parents=True)
    for f in (root / "alpha").iterdir():
        (flat / f.name).write_bytes(f.read_bytes())
    assert index_neu(tmp_path / "flat").classes == ["crazing"]


def test_each_step_is_reported_as_it_happened(tmp_path: Path):
    from osd import artifacts

    def compute():
        return {"x": 1}, {"step": "made here"}

    artifacts.cached_step(tmp_path / "first.npz", "k1", lambda: ({"x": 0}, {"step": "made elsewhere"}))
    with artifacts.step_log() as log:  # another process made the first step; this one makes the second
        artifacts.cached_step(tmp_path / "first.npz", "k1", compute)
        artifacts.cached_step(tmp_path / "second.npz", "k2", compute)
        artifacts.cached_step(tmp_path / "second.npz", "k2", compute)  # read again: listed once
    assert log == [("made elsewhere", True), ("made here", False)]
    with artifacts.step_log() as outer:
        pass
    assert outer == []


def test_a_byte_identical_image_in_two_classes_is_named_as_a_label_conflict(tmp_path: Path):
    from conftest import write_severstal

    neu = _neu_named_folders(tmp_path / "neu", {c: c for c in ("dent", "pit", "rust", "scale")}, per_class=20)
    (neu / "pit" / "copy.jpg").write_bytes((neu / "dent" / "dent_1.jpg").read_bytes())
    p = tmp_path / "p"
    assert runner.invoke(app, ["init", str(p), "--neu", str(neu), "--severstal",
                               str(write_severstal(tmp_path / "sev"))]).exit_code == 0
    r = runner.invoke(app, ["data", "check", "-p", str(p), "--json"])
    rep = json.loads(r.stdout)
    assert len(rep["duplicates"]) == 1
    assert [sorted(c.values()) for c in rep["label_conflicts"]] == [["dent", "pit"]]
    assert any(n.startswith("label conflict") and "dent" in n and "pit" in n for n in rep["notes"])


def test_faiss_prints_no_raw_warning_for_a_small_bank(capfd):
    pytest.importorskip("faiss")
    import torch

    from osd.patchcore.search import train_ivf

    assert train_ivf(torch.randn(32, 8), 1).shape == (1, 8)
    assert "WARNING clustering" not in capfd.readouterr().err


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_a_nan_score_gives_no_decision_in_either_engine(tiny_project: Path, engine: str, monkeypatch):
    import numpy as np

    from conftest import ok
    from osd import config
    from osd.pipeline.predict import Predictor

    p = str(tiny_project)
    ok("calibrate", "-p", p, "--split", "a")
    if engine == "onnx":
        pytest.importorskip("onnxruntime")
        ok("export", "-p", p, "--split", "a", "--approach", "one-stage")
    pred = Predictor(Job.of(config.load(tiny_project)), "a", "one-stage", engine=engine)
    if engine == "onnx":
        real = pred.onnx.one_stage
        monkeypatch.setattr(pred.onnx, "one_stage", lambda imgs, size: (lambda c, d, m: (c, d * np.nan, m))(
            *real(imgs, size)))
    else:
        monkeypatch.setattr(pred.scorer, "score_samples", lambda x: np.full(len(x), np.nan))
    imgs = sorted((tiny_project / "neu" / "IMAGES").glob("*.jpg"))[:3]
    rows = list(pred.predict(imgs))
    assert [r["status"] for r in rows] == ["invalid_score"] * 3
    assert all(r["one_stage"] is None and r["one_stage_score"] is None for r in rows)
    json.dumps(rows, allow_nan=False)


def test_four_neu_class_folders_run_the_whole_study(tmp_path: Path):
    from conftest import write_severstal

    four = {c: c for c in ("crazing", "inclusion", "patches", "scratches")}
    neu = _neu_named_folders(tmp_path / "neu", four, per_class=20)
    p = tmp_path / "p"
    assert runner.invoke(app, ["init", str(p), "--neu", str(neu), "--severstal",
                               str(write_severstal(tmp_path / "sev"))]).exit_code == 0
    tiny = ["classifier.arch=resnet18", "classifier.weights=none", "classifier.image_size=32", "classifier.epochs=1",
            "stats.bootstrap=20", "patchcore.backbone=resnet18", "patchcore.weights=none", "patchcore.image_size=32",
            "bench.runs=1", "bench.warmup=0"]
    r = runner.invoke(app, ["run-all", "-p", str(p), "--json", *[x for t in tiny for x in ("--set", t)]])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {s["split"] for s in out["steps"]} >= {"a", "b"} and "c" not in {s["split"] for s in out["steps"]}
    assert (p / "outputs" / "report.html").is_file()


def test_osr_baselines_are_rows_with_human_names_readable_at_100_columns():
    """Eight baselines and two variants: one row each, no cell cut short (…) at 100 columns."""
    from types import SimpleNamespace

    from rich.console import Console

    from osd.cli.views import beside_table
    from osd.osr.baselines import BASELINES, HUMAN

    cell = {"auroc": 0.5123, "open_set_accuracy": 0.7421,
            "intervals95": {"auroc": [0.436, 0.588], "open_set_accuracy": [0.711, 0.772]},
            "locked_minus_baseline": {"auroc": {"difference": 0.471, "ci95": [0.398, 0.543]},
                                      "open_set_accuracy": {"difference": 0.153, "ci95": [0.122, 0.183]}}}
    r = SimpleNamespace(variants={"multilayer": {"auroc": 0.927, "open_set_accuracy": 0.853}},
                        baselines={n: cell for n in BASELINES})
    console = Console(width=100, record=True)
    console.print(beside_table(r))
    text = console.export_text()
    assert "…" not in text and "0.512" in text and "+0.471" in text and "[+0.398, +0.543]" in text
    flat = " ".join(text.split())
    for name in BASELINES:  # each baseline's table name (words may wrap inside the cell)
        assert all(word.strip("│") in flat for word in f"baseline: {HUMAN[name]}".split())
    assert "mahalanobis_norm" not in text and "baseline_" not in text

"""Issue 9: no number is ever silently wrong or mislabelled. One test per case of the issue."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import run_json
from osd import artifacts, config
from osd.errors import ArtifactError, OsdWarning
from osd.pipeline.job import Job

runner = CliRunner()


run = run_json


# 1. stage-1 scores land on the right images -------------------------------------------------


def test_truncated_jpeg_is_listed_by_check_and_scores_stay_on_their_images(tiny_project: Path):
    from osd.patchcore.stage1 import score_images
    from osd.pipeline.cascade import stage1_scores
    from osd.pipeline.data import stage1_sizes

    p = str(tiny_project)
    cfg = config.load(tiny_project)
    clean, _, _ = stage1_scores(Job.of(cfg), "a")
    # the first 2000 bytes of a real-looking JPEG: the header parses, the pixels do not
    from PIL import Image

    big = tiny_project / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(big, quality=95)
    bad = tiny_project / "neu" / "IMAGES" / "crazing_0.jpg"
    bad.write_bytes(big.read_bytes()[:2000])
    report = run("data", "check", "-p", p)
    assert [u["path"] for u in report["unreadable"]] == [str(bad)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OsdWarning)
        again, _, cached = stage1_scores(Job.of(cfg), "a", force=True)
    # scores are keyed by the path relative to neu.root: the bad file is absent, every other one unchanged
    rel, rel2 = list(clean)[:2]
    assert "IMAGES/crazing_0.jpg" not in again and again == clean
    # and where a file becomes unreadable after indexing, its score is NaN by id, never a neighbour's
    from osd import runtime
    from osd.pipeline.detector import stage1_models

    detector, extractor, _ = stage1_models(Job.of(cfg), runtime.resolve_device("cpu"))
    root = tiny_project / "neu"
    paths = [root / rel, bad, root / rel2]
    with pytest.warns(OsdWarning, match="stage 1 skips"):
        scores, skipped = score_images(detector, extractor, paths, stage1_sizes(cfg), "cpu", None, "t")
    assert np.isnan(scores[1]) and list(skipped) == [str(bad)]
    assert scores[0] == pytest.approx(clean[rel], rel=1e-5)  # its own score, looked up by its own path
    assert scores[2] == pytest.approx(clean[rel2], rel=1e-5)
    assert abs(scores[0] - scores[2]) > 1e-6  # two images: a shifted pairing would show


# 2. reports are labelled with what produced them ---------------------------------------------


def test_report_names_the_settings_that_produced_each_number(tiny_project: Path):
    p = str(tiny_project)
    run("osr", "-p", p, "--split", "a", "--set", "classifier.epochs=1")
    rep = run("report", "-p", p)  # the osd.toml says epochs = 2
    assert any("classifier.epochs = 1" in c and "osd.toml now: 2" in c for c in rep["caveats"])
    rows = [r for r in rep["rows"] if r["split"] == "a" and r["approach"] == "one_stage_mahalanobis"]
    assert "classifier.epochs = 1" in rows[0]["settings_differ_from_osd_toml"]
    html = Path(rep["report_html"]).read_text()
    assert "classifier.epochs = 1" in html
    metrics = json.loads((tiny_project / "outputs" / "split_a" / "metrics.json").read_text())
    prov = metrics["osr"]["provenance"]
    assert prov["config"]["classifier.epochs"] == 1 and prov["environment"]["torch"]
    assert prov["inputs"]["classifier"] and prov["inputs"]["embeddings"] and prov["inputs"]["calibration"]
    assert "config" not in metrics and "weights" not in metrics  # report wrote nothing into metrics.json
    before = (tiny_project / "outputs" / "split_a" / "metrics.json").read_bytes()
    run("report", "-p", p)
    assert (tiny_project / "outputs" / "split_a" / "metrics.json").read_bytes() == before


# 3. stale caches -----------------------------------------------------------------------------


def test_retraining_invalidates_the_embeddings_and_everything_after(tiny_project: Path):
    p = str(tiny_project)
    run("osr", "-p", p, "--split", "a")
    run("train", "-p", p, "--split", "a", "--force")
    emb = run("embed", "-p", p, "--split", "a")
    assert emb["cached"] is False
    assert run("calibrate", "-p", p, "--split", "a")["cached"] is False


def test_a_weights_file_counts_by_content_and_normals_by_content(tiny_project: Path):
    import torch
    import torchvision

    from osd.pipeline.data import normal_data
    from osd.pipeline.detector import patchcore_key
    from osd.pipeline.train import train_key

    w = tiny_project / "w.pth"
    torch.save(torchvision.models.resnet18().state_dict(), w)
    cfg = config.load(tiny_project, ["classifier.weights=w.pth"])  # relative to osd.toml, not the cwd
    k1 = train_key(Job.of(cfg), "a")
    torch.save(torchvision.models.resnet18().state_dict(), w)  # same name and size, other content
    artifacts._digests.cache_clear()
    assert train_key(Job.of(cfg), "a") != k1
    cfg = config.load(tiny_project)
    k2 = patchcore_key(Job.of(cfg), normal_data(cfg))
    normal = normal_data(cfg).split.bank[0]
    from PIL import Image

    img = np.asarray(Image.open(normal)).copy()
    img[0, 0] = 255 - img[0, 0]
    Image.fromarray(img).save(normal, format="PNG") if normal.suffix == ".png" else Image.fromarray(img).save(normal)
    artifacts._digests.cache_clear()
    assert patchcore_key(Job.of(cfg), normal_data(cfg)) != k2


def test_cache_keys_hold_library_versions_and_bench_keys_threads(tiny_project: Path, monkeypatch):
    from osd.pipeline.bench import bench_key as _bench_key

    k = artifacts.cache_key("x")
    from osd import identity

    monkeypatch.setattr(identity, "environment", lambda: {"torch": "0.0"})
    assert artifacts.cache_key("x") != k
    monkeypatch.undo()
    cfg = config.load(tiny_project)
    assert _bench_key(Job.of(cfg), "c") != _bench_key(Job.of(cfg.replace(**{"project.threads": 1})), "c")


# 5. a corrupt metrics.json is set aside, not silently replaced --------------------------------


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_corrupt_metrics_json_is_kept_aside_with_a_warning(tmp_path: Path, content: str):
    path = tmp_path / "metrics.json"
    path.write_text(content)
    with pytest.warns(OsdWarning, match="kept as metrics.json.corrupt-"):
        artifacts.update_metrics(path, "osr", {"auroc": 0.9})
    aside = list(tmp_path.glob("metrics.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    assert json.loads(path.read_text()) == {"osr": {"auroc": 0.9}}
    artifacts.update_metrics(path, "cascade", {"x": 1})
    assert set(json.loads(path.read_text())) == {"osr", "cascade"}


# 6. NaN is written as null with a reason ------------------------------------------------------


def test_nan_is_written_as_null_with_its_reason(tmp_path: Path):
    path = tmp_path / "m.json"
    with pytest.warns(OsdWarning, match="undefined value"):
        artifacts.write_json(path, {"stage1": {"false_alarm_rate": float("nan"), "ok": np.float32(0.5)}},
                             {"false_alarm_rate": "no usable normal test crops"})
    text = path.read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["stage1"]["false_alarm_rate"] is None
    assert data["null_reasons"] == {"stage1.false_alarm_rate": "no usable normal test crops"}


# 7. the trapezoid rule comes from the declared libraries ---------------------------------------


def test_oscr_uses_sklearn_auc_and_matches_a_hand_computed_value():
    from osd.metrics import oscr

    # knowns 1 (correct), 2 (wrong); unknowns 3: CCR/FPR steps (0,0) -> (.5,0) -> (.5,0) -> (.5,1)
    assert oscr(np.array([True, False]), np.array([1.0, 2.0]), np.array([3.0])) == pytest.approx(0.5)


# also in scope: permissions, no partial files, safe loading ----------------------------------


def test_artifacts_follow_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        artifacts._file_mode.cache_clear()
        p = artifacts.write_text(tmp_path / "summary.csv", "a\n")
        artifacts.save(tmp_path / "x.npz", "k", {"a": np.arange(3)})
    finally:
        os.umask(old)
        artifacts._file_mode.cache_clear()
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "x.npz").stat().st_mode) == 0o644


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path):
    def disk_full(_: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(ArtifactError, match="No space left on device"):
        artifacts.atomic_write(tmp_path / "model.npz", disk_full)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_cleaned(tmp_path: Path):
    dead = tmp_path / ".model.npz.999999999.abc.tmp"
    dead.write_bytes(b"x" * 100)
    mine = tmp_path / f".other.{os.getpid()}.abc.tmp"
    mine.write_bytes(b"x")
    artifacts.write_text(tmp_path / "a.txt", "a")
    assert not dead.exists() and mine.exists()


def test_artifacts_round_trip_and_refuse_foreign_objects(tmp_path: Path):
    import torch

    from osd.osr.thresholds import AcceptanceThreshold

    thr = AcceptanceThreshold(0.9).fit(np.arange(50.0))
    payload = {"t": torch.arange(4.0), "thr": thr, "box": (1, 2, 3, 4), "names": ["a", "b"], "nan": float("nan"),
               "labels": np.array(["x", "y"], dtype=object)}
    artifacts.save(tmp_path / "a.npz", "key", payload, {"step": "s"})
    back = artifacts.load(tmp_path / "a.npz", "key")
    assert torch.equal(back["t"], payload["t"]) and back["box"] == (1, 2, 3, 4) and np.isnan(back["nan"])
    assert back["thr"].threshold_ == thr.threshold_ and back["labels"].tolist() == ["x", "y"]
    assert artifacts.load(tmp_path / "a.npz", "other") is None
    with pytest.raises(TypeError):
        artifacts.save(tmp_path / "b.npz", "k", {"f": object()})
    # a record naming a class outside the allow-list is refused, not imported
    meta = json.dumps({"format": artifacts.FORMAT, "key": "k", "id": "i", "provenance": {},
                       "payload": {"__estimator__": "os.system", "params": {"__dict__": []},
                                   "fitted": {"__dict__": []}}}).encode()
    with (tmp_path / "evil.npz").open("wb") as fh:
        np.savez(fh, __record__=np.frombuffer(meta, dtype=np.uint8))
    with pytest.warns(OsdWarning, match="refusing to rebuild"):
        assert artifacts.load(tmp_path / "evil.npz", None) is None

"""Issue 19: one lineage and one decision rule; `predict`, the study and the caches cannot drift apart."""

from __future__ import annotations

import csv
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import ok
from osd import artifacts, config, decide
from osd.cli.app import app
from osd.errors import OsdWarning
from osd.pipeline.job import Job

runner = CliRunner()


# 1. predict refuses a broken chain -----------------------------------------------------------


def test_predict_after_retraining_refuses_the_old_calibration(tiny_project: Path):
    p = str(tiny_project)
    img = str(tiny_project / "neu" / "IMAGES" / "crazing_1.jpg")
    ok("osr", "-p", p, "--split", "a")
    ok("predict", img, "-p", p, "--split", "a", "--approach", "one-stage")
    ok("train", "-p", p, "--split", "a", "--force")  # a new classifier; calibration still from the old one
    r = runner.invoke(app, ["predict", img, "-p", p, "--split", "a", "--approach", "one-stage"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "do not belong together" in r.output and "osd calibrate --split a" in r.output
    ok("calibrate", "-p", p, "--split", "a")  # rebuilding the chain makes predict work again
    ok("predict", img, "-p", p, "--split", "a", "--approach", "one-stage")


def test_predict_refuses_a_classifier_copied_from_another_split(tiny_project: Path):
    p = str(tiny_project)
    img = str(tiny_project / "neu" / "IMAGES" / "pitted_surface_1.jpg")
    ok("calibrate", "-p", p, "--split", "a")
    ok("calibrate", "-p", p, "--split", "b")
    out = tiny_project / "outputs"
    shutil.copy(out / "split_b" / "classifier" / "model.npz", out / "split_a" / "classifier" / "model.npz")
    r = runner.invoke(app, ["predict", img, "-p", p, "--split", "a", "--approach", "one-stage"])
    assert r.exit_code == 1 and "do not belong together" in r.output and "Traceback" not in r.output


def test_require_names_the_link_that_breaks(tmp_path: Path):
    from osd.errors import LineageError

    a = artifacts.save(tmp_path / "a.npz", "k", {"x": 1}, {"inputs": {}})
    artifacts.save(tmp_path / "b.npz", "k", {"y": 2}, {"inputs": {"a": a}})
    assert artifacts.require(tmp_path / "b.npz", "osd x", "b", {"a": a}).payload == {"y": 2}
    with pytest.raises(LineageError, match="built from another a"):
        artifacts.require(tmp_path / "b.npz", "osd x", "b", {"a": "someone-else"})


# 2. one decision rule --------------------------------------------------------------------------


def test_softmax_is_float64_so_saturated_confidence_is_not_rounded_to_one():
    logits = np.array([[18.0, 0.0, 0.0]], dtype=np.float32)
    z = logits - logits.max()
    f32 = (np.exp(z) / np.exp(z).sum()).max()
    assert f32 == np.float32(1.0)  # float32 loses the difference at a logit gap of 18
    closed, msp = decide.closed_set(logits, ["a", "b", "c"])
    assert msp.dtype == np.float64 and msp[0] < 1.0
    kappa = 1.0 - 1e-9
    assert decide.confidence(msp, kappa, closed)[0] == decide.UNKNOWN


def test_decision_rules_on_a_hand_case():
    closed = np.array(["a", "b", "c"], dtype=object)
    assert decide.one_stage(np.array([1.0, 2.0, 3.0]), 2.0, closed).tolist() == ["a", "b", "unknown"]
    modes = decide.cascade(np.array([0.1, 0.9, 0.9]), 0.5, closed, np.array([0.9, 0.4, 0.8]), 0.5)
    assert modes["strict"].tolist() == ["no_defect", "unknown", "c"]
    assert modes["ignore_no_defect"].tolist() == ["a", "unknown", "c"]
    assert decide.cascade(np.array([0.9]), 0.5, closed[:1], np.array([0.1]), None)["strict"].tolist() == ["a"]


def _predictions(path: Path) -> dict[str, dict[str, str]]:
    return {r["path"]: r for r in csv.DictReader(path.open())}


def assert_predict_equals_study(cfg_dir: Path, split: str, rel: float = 1e-5, extra: list[str] | None = None) -> int:
    """Every test image of the split through `osd predict`: the study's decisions and scores exactly."""
    out = cfg_dir / "outputs" / f"split_{split}"
    study, casc = _predictions(out / "osr" / "predictions.csv"), _predictions(out / "cascade" / "predictions.csv")
    listing = cfg_dir / f"test_{split}.txt"
    listing.write_text("\n".join(study) + "\n")
    r = runner.invoke(app, ["predict", str(listing), "-p", str(cfg_dir), "--split", split, *(extra or []), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [x["path"] for x in rows] == list(study)
    for row in rows:
        s, c = study[row["path"]], casc[row["path"]]
        assert row["one_stage"] == s["pred_label"] and row["closed_class"] == s["closed_label"]
        assert row["cascade"] == c["pred_strict"]
        assert row["one_stage_score"] == pytest.approx(float(s["distance"]), rel=rel)
        assert row["msp"] == pytest.approx(float(s["msp"]), rel=rel)
        assert row["stage1_score"] == pytest.approx(float(c["stage1_score"]), rel=rel)
    return len(rows)


def test_predict_gives_the_study_decisions_for_every_test_image(tiny_project: Path):
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    ok("cascade", "-p", p, "--split", "a")
    assert assert_predict_equals_study(tiny_project, "a") > 10


def test_a_long_image_gets_one_stage1_rule_in_study_and_predict(tiny_project: Path):
    """A 2:1 test image: the study's stage-1 score equals what predict gives for the same file."""
    from osd.pipeline.cascade import stage1_scores
    from osd.pipeline.osr import calibrate
    from osd.pipeline.predict import predict

    cfg = config.load(tiny_project)
    entry = Job.of(cfg).manifest("a").test()[0]
    img = entry.path
    arr = np.asarray(Image.open(img).convert("L"))
    Image.fromarray(np.hstack([arr, arr[:, ::-1]]) // 2 + 60).save(img)  # 64x32: two crops' worth
    calibrate(Job.of(cfg), "a")  # predict needs the classifier for stage 2
    scores, _, _ = stage1_scores(Job.of(cfg), "a")

    rows = predict(Job.of(cfg), "a", [img], approach="cascade")
    assert rows[0]["stage1_score"] == pytest.approx(scores[entry.rel], rel=1e-5)


# 3. the data index follows the files in a long-lived process -----------------------------------


def _digest_of(project: str, name: str) -> str:
    from osd.pipeline.data import neu_index

    cfg = config.load(Path(project))
    index, digests = neu_index(cfg)
    return dict(zip([p.name for p in index.paths], digests))[name]


def test_one_worker_process_sees_an_image_changed_between_submissions(tiny_project: Path):
    img = tiny_project / "neu" / "IMAGES" / "crazing_2.jpg"
    with ProcessPoolExecutor(max_workers=1) as pool:
        first = pool.submit(_digest_of, str(tiny_project), img.name).result()
        arr = np.asarray(Image.open(img)).copy()
        arr[:8] = 255 - arr[:8]
        Image.fromarray(arr).save(img, quality=90)
        second = pool.submit(_digest_of, str(tiny_project), img.name).result()
    assert first != second


# 4. cache keys hold every input ------------------------------------------------------------------


def test_patchcore_key_covers_the_masks_of_the_in_domain_test(tiny_project: Path):
    from osd.pipeline.data import normal_data
    from osd.pipeline.detector import patchcore_key

    cfg = config.load(tiny_project)
    before = patchcore_key(Job.of(cfg), normal_data(cfg))
    csv_path = tiny_project / "sev" / "train.csv"
    csv_path.write_text(csv_path.read_text().replace(",3,1 10", ",3,5 20"))
    assert patchcore_key(Job.of(cfg), normal_data(cfg)) != before


def test_training_key_covers_threads_and_refuses_an_absent_device(tiny_project: Path):
    from osd.errors import DeviceError
    from osd.pipeline.train import train_key

    cfg = config.load(tiny_project)
    one, two = (Job.of(cfg.replace(**{"project.threads": n})) for n in (1, 2))
    assert train_key(one, "a") != train_key(two, "a")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            train_key(Job.of(cfg.replace(**{"project.device": "cuda"})), "a")


def test_cuda_on_a_cached_osr_is_one_line(tiny_project: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    r = runner.invoke(app, ["osr", "-p", p, "--split", "a", "--device", "cuda"])
    assert r.exit_code == 1 and "CUDA is not available" in r.output and "Traceback" not in r.output


# 5. dark normal images, 6. odd metrics.json, 8. small ones -------------------------------------


def test_all_dark_normal_images_are_one_line_naming_the_settings(tiny_project: Path):
    for f in (tiny_project / "sev" / "train_images").glob("*.jpg"):
        Image.fromarray(np.full((64, 400), 3, np.uint8)).save(f)
    r = runner.invoke(app, ["patchcore", "fit", "-p", str(tiny_project)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "normal.max_dark_fraction" in r.output and "0 crops" in r.output and "unreadable" not in r.output


@pytest.mark.parametrize("content", ['{"osr": null}', '{"osr": "broken", "cascade": 3}', "[]"])
def test_report_reads_the_records_not_an_odd_metrics_json(tiny_project: Path, content: str):
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    ok("report", "-p", p)
    summary = (tiny_project / "outputs" / "summary.csv").read_text()
    (tiny_project / "outputs" / "split_a" / "metrics.json").write_text(content)
    ok("report", "-p", p)
    assert (tiny_project / "outputs" / "summary.csv").read_text() == summary


def test_report_names_an_unreadable_record(tiny_project: Path):
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    (tiny_project / "outputs" / "split_a" / "osr" / "evaluation.npz").write_bytes(b"not an artifact")
    r = runner.invoke(app, ["report", "-p", p])
    assert "Traceback" not in r.output and r.exit_code == 1, r.output
    assert "evaluation.npz" in r.output and "no results yet" in r.output


def test_train_csv_with_a_byte_order_mark_is_read(tiny_project: Path):
    from osd.data.severstal import index_severstal

    csv_path = tiny_project / "sev" / "train.csv"
    plain = index_severstal(tiny_project / "sev")
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    bom = index_severstal(tiny_project / "sev")
    assert bom.masks == plain.masks and bom.normal == plain.normal and len(bom.defective) == 2


def test_a_normal_image_smaller_than_a_crop_is_said(tiny_project: Path):
    from osd.patchcore.stage1 import crop_boxes_of
    from osd.pipeline.data import stage1_sizes

    cfg = config.load(tiny_project)
    small = tiny_project / "small.png"
    Image.fromarray(np.full((40, 50), 120, np.uint8)).save(small)
    with pytest.warns(OsdWarning, match="smaller than normal.crop_size"):
        assert crop_boxes_of(small, stage1_sizes(cfg)) == [(0, 0, 40, 40), (10, 0, 50, 40)]  # 40-px squares, edge-aligned


# 7. every step that writes an artifact holds its lock; a cached run is a cached run ------------


def test_every_artifact_is_written_under_its_lock_and_a_repeated_study_only_reads(tiny_project: Path, monkeypatch):
    from contextlib import contextmanager

    held: set[Path] = set()
    real_exclusive, real_save = artifacts.exclusive, artifacts.save
    unlocked: list[str] = []

    @contextmanager
    def spy_exclusive(path, on_wait=None):
        with real_exclusive(path, on_wait):
            held.add(Path(path))
            try:
                yield
            finally:
                held.discard(Path(path))

    def spy_save(path, *a, **k):
        if Path(path).name != "checkpoint.npz" and Path(path) not in held:
            unlocked.append(str(path))
        return real_save(path, *a, **k)

    from osd.artifacts import cache

    monkeypatch.setattr(cache, "exclusive", spy_exclusive)
    monkeypatch.setattr(cache, "save", spy_save)
    p = str(tiny_project)
    ok("run-all", "-p", p, "--splits", "a")
    assert unlocked == []

    # the second run only reads: no metric, interval or artifact is computed again
    from osd import metrics
    from osd.pipeline import cascade, osr

    def no(*a, **k):
        raise AssertionError("recomputed")

    for module, name in ((osr, "metric_intervals"), (cascade, "metric_intervals"), (metrics, "bootstrap"),
                         (cache, "save")):
        monkeypatch.setattr(module, name, no)
    r = runner.invoke(app, ["run-all", "-p", p, "--splits", "a", "--json"])
    assert r.exit_code == 0, r.output
    assert all(s["cached"] for s in json.loads(r.stdout)["steps"])


# 9. the verdict says what it averages, with an interval ----------------------------------------


def _runs(diffs: list[tuple[float, float]], seeds: int = 1) -> list:
    from osd.records import CascadeResult
    from osd.report.answer import Run

    out = []
    for i, (d, half) in enumerate(diffs):
        v = {"difference": d, "ci95": [d - half, d + half], "excludes_zero": abs(d) > half,
             "p_value": 0.001 if abs(d) > half else 0.5}
        for seed in range(seeds):
            cascade = CascadeResult(f"r{i}", [], 0.0, None, {}, {}, 0.0, None,
                                    versus_one_stage={"ignore_no_defect": {"open_set_accuracy": v}})
            out.append(Run(f"r{i}", seed, cascade=cascade))
    return out


def test_verdict_over_splits_calls_a_winner_only_when_the_split_interval_excludes_zero():
    from osd.report.build import verdict

    clear = verdict(_runs([(0.10, 0.03), (0.12, 0.03), (0.11, 0.03)]), False)[0]["summary"][0]
    assert clear["claim"] == "one-stage better" and clear["ci95"][0] > 0
    assert clear["n_splits"] == 3 and clear["runs_one_stage_better"] == 3
    mixed = verdict(_runs([(0.10, 0.03), (-0.10, 0.03), (0.0, 0.03)]), False)[0]["summary"][0]
    assert mixed["claim"] == "no clear difference" and mixed["ci95"][0] < 0 < mixed["ci95"][1]
    assert mixed["runs_one_stage_better"] == 1 and mixed["runs_cascade_better"] == 1
    # two splits, however many seeds: no overall claim
    two = verdict(_runs([(0.10, 0.01), (0.12, 0.01)], seeds=3), False)[0]["summary"][0]
    assert two["claim"] == "no overall claim" and two["n_seeds"] == 3

"""Issue 11: repeated seeds, and thresholds that test data cannot move."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from osd import config
from osd.cli.app import app
from osd.pipeline.job import Job

runner = CliRunner()


def test_run_all_over_two_seeds_caches_each_and_summarises_over_seeds(tiny_project: Path):
    p = str(tiny_project)
    r = runner.invoke(app, ["run-all", "-p", p, "--splits", "a", "--seeds", "0,1", "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    out = tiny_project / "outputs"
    assert (out / "split_a" / "metrics.json").is_file() and (out / "seed_1" / "split_a" / "metrics.json").is_file()
    m0 = json.loads((out / "split_a" / "metrics.json").read_text())
    m1 = json.loads((out / "seed_1" / "split_a" / "metrics.json").read_text())
    assert m0["osr"]["provenance"]["config"]["project.seed"] == 0
    assert m1["osr"]["provenance"]["config"]["project.seed"] == 1
    rows = list(csv.DictReader((out / "summary.csv").open()))
    keys = {(r["split"], r["seed"], r["approach"]) for r in rows}
    for approach in ("one_stage_mahalanobis", "cascade_ignore_no_defect"):
        assert {("a", "0", approach), ("a", "1", approach), ("a", "mean", approach), ("a", "std", approach),
                ("mean", "all", approach), ("std", "all", approach)} <= keys
    per_seed = [float(r["open_set_accuracy"]) for r in rows
                if r["split"] == "a" and r["seed"] in ("0", "1") and r["approach"] == "one_stage_mahalanobis"]
    mean = next(float(r["open_set_accuracy"]) for r in rows
                if r["split"] == "a" and r["seed"] == "mean" and r["approach"] == "one_stage_mahalanobis")
    std = next(float(r["open_set_accuracy"]) for r in rows
               if r["split"] == "a" and r["seed"] == "std" and r["approach"] == "one_stage_mahalanobis")
    assert abs(mean - np.mean(per_seed)) < 1e-3 and abs(std - np.std(per_seed, ddof=1)) < 1e-3
    # the report's provenance check compares each run with its own seed: no false "differs" note
    assert not any("project.seed" in c for c in first["report"]["caveats"])
    again = json.loads(runner.invoke(app, ["run-all", "-p", p, "--splits", "a", "--seeds", "0,1", "--json"]).stdout)
    assert all(s["cached"] for s in again["steps"] if s["step"] in ("train", "patchcore fit", "bench"))
    # `osd report` afterwards reports every seed on disk, not only project.seed: it must not quietly
    # replace the two-seed summary with a one-seed one
    r = runner.invoke(app, ["report", "-p", p, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["seeds"] == [0, 1]
    assert {(r["split"], r["seed"]) for r in csv.DictReader((out / "summary.csv").open())} >= {("a", "0"), ("a", "1")}
    r = runner.invoke(app, ["report", "-p", p, "--seeds", "1", "--json"])
    assert json.loads(r.stdout)["seeds"] == [1]


def test_perturbing_test_images_moves_no_threshold(tiny_project: Path):
    from osd.pipeline.detector import stage1_fit
    from osd.pipeline.osr import calibrate, evaluate

    cfg = config.load(tiny_project)
    before = calibrate(Job.of(cfg), "a")
    first = evaluate(Job.of(cfg), "a")
    variants = {k: v["tau"] for k, v in first.variants.items()}
    assert first.selection["selected"] in ("penultimate", "multilayer", "multilayer_mean_std")
    pc = stage1_fit(Job.of(cfg)).threshold
    for e in Job.of(cfg).manifest("a").test()[:6]:  # known and unknown test images get other pixels
        arr = np.asarray(Image.open(e.path).convert("L")).copy()
        Image.fromarray(255 - arr).save(e.path)
    after = calibrate(Job.of(cfg), "a")
    assert (after.tau, after.kappa) == (before.tau, before.kappa)
    again = evaluate(Job.of(cfg), "a")
    assert {k: v["tau"] for k, v in again.variants.items()} == variants
    assert again.selection == first.selection  # the choice made without test data stays as it was
    assert again.osr != first.osr  # while the test metrics did move: the test images really changed
    assert stage1_fit(Job.of(cfg)).threshold == pc


def test_threshold_images_choose_nothing_and_selection_images_choose_the_epoch(tiny_project: Path):
    """tau and kappa rest on images that neither trained the model nor chose its epoch."""
    from osd.pipeline.train import train, train_key

    cfg = config.load(tiny_project)
    m = Job.of(cfg).manifest("a")
    sel, val = m.part("epoch_select"), m.part("threshold")
    assert sel and val and not {e.rel for e in sel} & {e.rel for e in val}
    first = train(Job.of(cfg), "a")
    assert first.selection_accuracy is not None and all("select_accuracy" in h for h in first.history)
    key = train_key(Job.of(cfg), "a")
    for e in val:  # threshold images get other pixels: the model is kept
        Image.fromarray(255 - np.asarray(Image.open(e.path).convert("L"))).save(e.path)
    assert train_key(Job.of(cfg), "a") == key and train(Job.of(cfg), "a").cached
    e = sel[0]  # a selection image: it may choose another epoch, so the model is retrained
    Image.fromarray(255 - np.asarray(Image.open(e.path).convert("L"))).save(e.path)
    assert train_key(Job.of(cfg), "a") != key

    last = train(Job.of(cfg.replace(**{"splits.selection_fraction": 0.0})), "a")
    assert last.selection_accuracy is None and last.best_epoch == cfg.classifier.epochs

"""Issue 23: normal images of the same line, the three-outcome study."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from conftest import write_neu, write_severstal
from osd import config
from osd.cli.app import app
from osd.decide import NO_DEFECT, UNKNOWN
from osd.errors import ConfigError
from osd.metrics import bootstrap
from osd.pipeline.job import Job
from osd.three_outcome import METRICS, ThreeOutcome, image_auroc, kinds, true_outcomes

runner = CliRunner()
OWN = ["dent", "pit", "rust", "scale"]
TINY = ["--set", "classifier.arch=resnet18", "--set", "classifier.weights=none", "--set", "classifier.image_size=32",
        "--set", "classifier.epochs=1", "--set", "stats.bootstrap=20", "--set", "patchcore.backbone=resnet18",
        "--set", "patchcore.weights=none", "--set", "patchcore.image_size=32", "--set", "normal.crop_size=40",
        "--set", "normal.crop_stride=40", "--set", "bench.runs=1", "--set", "bench.warmup=0"]


def line(root: Path, per_class: int = 12, normals: int = 30, normal_shape: tuple[int, int] = (40, 40)
         ) -> tuple[Path, Path]:
    """Four own defect classes (a class-dependent stripe) and defect-free images of the same texture
    (``normal_shape``: (40, 160) gives long good parts of four crops)."""
    rng = np.random.default_rng(0)
    for ci, c in enumerate(OWN):
        d = root / "defects" / c
        d.mkdir(parents=True)
        for i in range(per_class):
            a = rng.normal(120, 10, (40, 40)).clip(0, 255).astype(np.uint8)
            a[:, ci * 6 : ci * 6 + 3] = 30
            Image.fromarray(a).save(d / f"{i}.png")
    good = root / "good"
    good.mkdir()
    for i in range(normals):
        Image.fromarray(rng.normal(120, 10, normal_shape).clip(0, 255).astype(np.uint8)).save(good / f"g{i}.png")
    return root / "defects", good


def test_metrics_against_sklearn_and_hand_counts():
    classes = ["a", "b"]
    roles = ["known"] * 4 + ["unknown"] * 2 + ["normal"] * 4
    kind = kinds(roles)
    true = true_outcomes(["a", "a", "b", "b", "c", "c", NO_DEFECT, NO_DEFECT, NO_DEFECT, NO_DEFECT], kind)
    assert list(true) == ["a", "a", "b", "b", UNKNOWN, UNKNOWN, NO_DEFECT, NO_DEFECT, NO_DEFECT, NO_DEFECT]
    pred = ["a", NO_DEFECT, "a", "b", UNKNOWN, "b", NO_DEFECT, NO_DEFECT, UNKNOWN, "a"]
    m = ThreeOutcome(true, pred, kind, classes).metrics(np.arange(10))
    assert set(m) == set(METRICS)
    assert m["normal_pass_rate"] == 0.5  # 2 of 4 normal images passed
    assert m["defect_detection_rate"] == 5 / 6  # one known image answered no_defect
    assert m["known_accuracy_detected"] == 2 / 3  # of the 3 detected known images, 2 named right
    assert m["unknown_rejection"] == 0.5
    assert m["three_outcome_accuracy"] == 5 / 10
    labels = [*classes, UNKNOWN, NO_DEFECT]
    assert m["three_outcome_macro_f1"] == pytest.approx(f1_score(true, pred, labels=labels, average="macro",
                                                                 zero_division=0))
    # a normal-class variant's classifier holds no_defect as a class: it is the outcome, not a K+1-th class
    assert ThreeOutcome(true, pred, kind, [*classes, NO_DEFECT]).metrics(np.arange(10)) == m
    # the locked one-stage method never answers no_defect: its normal pass rate is 0 and the label's F1 is 0
    locked = ["a", "a", "b", "b", UNKNOWN, UNKNOWN, UNKNOWN, "a", UNKNOWN, UNKNOWN]
    lm = ThreeOutcome(true, locked, kind, classes)
    assert lm.metrics(np.arange(10))["normal_pass_rate"] == 0.0
    assert lm.normal_calls() == {"no_defect": 0.0, "a_known_class": 0.25, "unknown": 0.75}
    assert image_auroc(kind != 2, np.array([5, 5, 5, 5, 5, 5, 1, 2, 3, 9.0])) == pytest.approx(18 / 24)


def test_bootstrap_strata_keep_the_known_unknown_draws():
    """Generalising the strata to three kinds must not change a single known/unknown interval."""
    rng = np.random.default_rng(3)
    unk = rng.random(40) < 0.3
    x = rng.random(40)

    def old(metric_fn, is_unknown, n_boot, seed):  # the previous implementation, verbatim in effect
        known, unknown = np.flatnonzero(~is_unknown), np.flatnonzero(is_unknown)
        r = np.random.default_rng(seed)
        draws = []
        for _ in range(n_boot):
            idx = np.concatenate([r.choice(known, len(known)), r.choice(unknown, len(unknown))])
            draws.append(metric_fn(idx)["m"])
        return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]

    fn = lambda idx: {"m": float(x[idx].mean())}  # noqa: E731
    assert bootstrap(fn, unk, 200, 7)["m"] == old(fn, unk, 200, 7)
    # three strata: every replicate keeps each kind's count
    kind = np.array([0] * 5 + [1] * 3 + [2] * 4)
    seen = []
    bootstrap(lambda idx: seen.append(np.bincount(kind[idx], minlength=3).tolist()) or {"m": 0.0}, kind, 20, 0)
    assert all(s == [5, 3, 4] for s in seen)


def test_init_decides_in_domain_from_the_data(tmp_path: Path):
    defects, good = line(tmp_path)
    assert runner.invoke(app, ["init", str(tmp_path / "own"), "--neu", str(defects), "--normal", str(good)]).exit_code == 0
    assert config.load(tmp_path / "own").normal.in_domain
    r = runner.invoke(app, ["init", str(tmp_path / "x"), "--neu", str(defects), "--normal", str(good), "--cross-domain"])
    assert r.exit_code == 0 and not config.load(tmp_path / "x").normal.in_domain
    neu = write_neu(tmp_path / "neu", "neu-det")
    sev = write_severstal(tmp_path / "sev")
    assert runner.invoke(app, ["init", str(tmp_path / "study"), "--neu", str(neu), "--severstal", str(sev)]).exit_code == 0
    assert not config.load(tmp_path / "study").normal.in_domain  # the NEU + Severstal study stays cross-domain
    assert runner.invoke(app, ["init", str(tmp_path / "d"), "--demo", "--in-domain"]).exit_code == 0
    cfg = config.load(tmp_path / "d")
    assert cfg.normal.in_domain and cfg.normal.folder == "data/normal" and not cfg.normal.severstal_root
    assert len(list((tmp_path / "d" / "data" / "normal").glob("*.jpg"))) == 120


def test_manifests_and_keys(tmp_path: Path):
    from osd.pipeline.data import normal_data
    from osd.pipeline.detector import patchcore_key

    defects, good = line(tmp_path)
    runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(defects), "--normal", str(good)])
    cfg = config.load(tmp_path / "p")
    cross = cfg.replace(**{"normal.in_domain": False})
    # in-domain normals are calibrated per image (the unit the line's test images and predict use): another fit
    assert patchcore_key(Job.of(cfg), normal_data(cfg)) != patchcore_key(Job.of(cross), normal_data(cross))
    # (issue 24) the chunk size keys the chunked coreset, not the exact greedy
    greedy = cfg.replace(**{"patchcore.coreset": "greedy"})
    key = lambda c, **kw: patchcore_key(Job.of(c.replace(**kw)), normal_data(c))  # noqa: E731
    assert key(greedy, **{"patchcore.coreset_chunk": 7}) == key(greedy) != key(cfg)
    assert key(cfg, **{"patchcore.coreset_chunk": 7}) != key(cfg)
    with pytest.raises(ConfigError, match="normal.in_domain"):
        Job.of(cross).manifest("a+normal")
    plain = Job.of(cross).manifest("a")
    base = Job.of(cfg).manifest("a")
    variant = Job.of(cfg).manifest("A+normal")
    assert variant.name == "a+normal" and variant.known == (*plain.known, NO_DEFECT)
    normal_test = {str(p) for p in normal_data(cfg).split.test}
    assert [e for e in base.entries if e.role != "normal"] == list(plain.entries)  # defect images unchanged
    assert {str(e.path) for e in base.test() if e.role == "normal"} == normal_test
    assert {str(e.path) for e in variant.part("test", "normal")} == normal_test  # the same test normals
    counts = variant.counts()
    assert counts[NO_DEFECT]["train"] == round(np.mean([counts[c]["train"] for c in plain.known]))
    used = {str(e.path) for e in variant.entries if e.label == NO_DEFECT and e.partition != "test"}
    assert used and not used & normal_test  # no test normal trains or calibrates the variant
    bank = {str(p) for p in normal_data(cfg).split.bank}
    assert {str(e.path) for e in variant.part("train") if e.label == NO_DEFECT} <= bank


def test_own_line_three_outcome_study_end_to_end(tmp_path: Path):
    """osd init --neu DEFECTS --normal GOOD, then run-all: the three-outcome study, reported and cached."""
    defects, good = line(tmp_path)
    p = str(tmp_path / "p")
    assert runner.invoke(app, ["init", p, "--neu", str(defects), "--normal", str(good)]).exit_code == 0
    r = runner.invoke(app, ["run-all", "-p", p, "--splits", "a", *TINY, "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    steps = [s["step"] for s in first["steps"]]
    assert steps[-5:] == ["train (normal class)", "embed (normal class)", "calibrate (normal class)", "outcomes",
                          "report"]
    out = tmp_path / "p" / "outputs"
    m = json.loads((out / "split_a" / "metrics.json").read_text())["three_outcome"]
    a = m["approaches"]
    assert set(a) == {"one_stage", "cascade_strict", "cascade_ignore_no_defect", "one_stage_normal_class"}
    n_normal = len([x for x in csv.DictReader((out / "split_a" / "split_manifest.csv").open()) if x["role"] == "normal"])
    assert m["data"]["images"]["normal"] == n_normal == 5  # 15% of 30 normal images
    assert a["one_stage"]["normal_pass_rate"] == 0.0  # no no_defect answer: every good part is an error
    assert a["cascade_ignore_no_defect"]["normal_pass_rate"] == 0.0
    assert sum(a["one_stage"]["normal_images_answered"].values()) == pytest.approx(1.0)
    for name in a:
        assert set(a[name]["intervals95"]) == set(METRICS)
    assert 0.0 <= m["stage1_auroc"]["auroc"] <= 1.0
    assert set(m["versus"]) == {"difference", "one_stage_minus_cascade_strict",
                                "one_stage_minus_cascade_ignore_no_defect", "one_stage_normal_class_minus_cascade_strict"}
    # the CSV holds every approach's answer per image, the normal ones with their true label no_defect
    rows = list(csv.DictReader((out / "split_a" / "outcomes" / "predictions.csv").open()))
    normal_rows = [x for x in rows if x["role"] == "normal"]
    assert len(normal_rows) == 5 and {x["true_label"] for x in normal_rows} == {NO_DEFECT}
    assert all(x["one_stage"] != NO_DEFECT for x in rows)
    # the metrics are the CSV's answers counted: the cascade's normal pass rate, the variant's accuracy
    assert a["cascade_strict"]["normal_pass_rate"] == np.mean([x["cascade_strict"] == NO_DEFECT for x in normal_rows])
    truth = [NO_DEFECT if x["role"] == "normal" else UNKNOWN if x["role"] == "unknown" else x["true_label"] for x in rows]
    assert a["one_stage_normal_class"]["three_outcome_accuracy"] == pytest.approx(
        np.mean([x["one_stage_normal_class"] == t for x, t in zip(rows, truth)]))
    # the variant learned no_defect as a class
    from osd import artifacts

    model = artifacts.read_json(out / "split_a+normal" / "osr" / "thresholds.json")
    assert model["tau"]["threshold"] == m["thresholds"]["tau_normal_class"] != m["thresholds"]["tau"]
    assert {x["class"] for x in csv.DictReader((out / "split_a+normal" / "split_manifest.csv").open())
            if x["partition"] == "train"} == {*config.load(p).split("a").known, NO_DEFECT}
    # the report: a three-outcome table, the verdict over it, the in-domain caveat
    rep = first["report"]
    assert (out / "summary_three_outcome.csv").is_file()
    assert {r["comparison"] for r in rep["verdict"]["summary"]} >= {"three outcomes, strict", "three outcomes, ignore_no_defect"}
    assert "three-outcome accuracy" in rep["verdict_sentence"]
    assert any(c.startswith("In-domain (normal.in_domain = true)") for c in rep["caveats"])
    assert "Three outcomes" in (out / "report.html").read_text()
    # a second run only reads
    again = json.loads(runner.invoke(app, ["run-all", "-p", p, "--splits", "a", *TINY, "--json"]).stdout)
    assert all(s["cached"] for s in again["steps"]), [s for s in again["steps"] if not s["cached"]]
    # osd outcomes on its own: the same numbers, cached
    one = json.loads(runner.invoke(app, ["outcomes", "-p", p, "--split", "a", *TINY, "--json"]).stdout)
    assert one["cached"] and one["approaches"]["one_stage"]["three_outcome_accuracy"] == \
        a["one_stage"]["three_outcome_accuracy"]


def test_the_balanced_lead_does_not_move_with_the_number_of_good_parts():
    """Issue 48, item 5: variant 0.90 pass / 0.92 named, cascade 0.97 / 0.86, beside 240 defects: the pooled
    accuracy's difference changes sign with the folder's good parts (50, 200, 600); the balanced one does not."""
    from osd.three_outcome import KNOWN, NORMAL, ThreeOutcome

    def approach(n_good: int, passed: float, named: float) -> ThreeOutcome:
        kind = np.r_[np.full(240, KNOWN), np.full(n_good, NORMAL)]
        true = ["a"] * 240 + ["no_defect"] * n_good
        pred = (["a"] * round(named * 240) + ["b"] * (240 - round(named * 240))
                + ["no_defect"] * round(passed * n_good) + ["a"] * (n_good - round(passed * n_good)))
        return ThreeOutcome(true, pred, kind, ["a", "b"])

    pooled, balanced = [], []
    for n_good in (50, 200, 600):
        idx = np.arange(240 + n_good)
        v, c = approach(n_good, 0.90, 0.92).metrics(idx), approach(n_good, 0.97, 0.86).metrics(idx)
        pooled.append(v["three_outcome_accuracy"] - c["three_outcome_accuracy"])
        balanced.append(v["balanced_three_outcome_accuracy"] - c["balanced_three_outcome_accuracy"])
    assert pooled[0] > 0.03 and pooled[2] < -0.02  # the folder decides the pooled sign
    # the per-kind rates (0.90 / 0.92 against 0.97 / 0.86: -0.005) move only by the counts' rounding at 50
    assert balanced == pytest.approx([-0.005] * 3, abs=7e-3) and max(balanced) - min(balanced) < 7e-3

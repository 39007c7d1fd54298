"""End to end on tiny synthetic data with tiny models, through the command line."""

import csv
import json
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from conftest import run_json
from osd import artifacts
from osd.cli.app import app

runner = CliRunner()


run = run_json


def test_one_stage_cached_and_reproducible_from_predictions(tiny_project: Path):
    p = str(tiny_project)
    first = run("osr", "-p", p, "--split", "a")
    assert set(first["osr"]) >= {"closed_set_accuracy", "auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr",
                                 "known_acceptance", "unknown_rejection", "open_set_accuracy",
                                 "open_set_macro_f1", "oscr"}
    out = tiny_project / "outputs" / "split_a"
    rows = list(csv.DictReader((out / "osr" / "predictions.csv").open()))
    assert list(rows[0])[:6] == ["path", "true_label", "role", "pred_label", "distance", "msp"]
    y = [r["role"] == "unknown" for r in rows]
    assert roc_auc_score(y, [float(r["distance"]) for r in rows]) == first["osr"]["auroc"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["osr"]["auroc"] == first["osr"]["auroc"] and "msp" in metrics["osr"]
    # the locked method is the headline; the variants come from the same embeddings
    assert metrics["osr"]["features"] == "penultimate" and metrics["osr"]["blocks"] == ["penultimate"]
    assert set(metrics["osr"]["variants"]) == {"multilayer", "multilayer_mean_std"}
    # an AUROC's interval holds it, never of zero width; a perfect separation gets the exact bound [c, 1]
    lo, hi = metrics["osr"]["intervals95"]["auroc"]
    assert lo <= metrics["osr"]["auroc"] <= hi and lo < hi
    # cached: train is not re-run; a second osr reuses every step and says so
    assert run("train", "-p", p, "--split", "a")["cached"] is True
    again = runner.invoke(app, ["osr", "-p", p, "--split", "a"])
    assert again.exit_code == 0 and "cached" in again.output
    # another scorer setting recalibrates from the stored embeddings, without retraining
    multi = run("osr", "-p", p, "--split", "a", "--set", "osr.features=multilayer")
    assert multi["cached"] is False and multi["features"] == "multilayer"
    assert "penultimate" in multi["variants"]
    assert run("train", "-p", p, "--split", "a")["cached"] is True
    # a changed setting retrains
    assert run("train", "-p", p, "--split", "a", "--set", "classifier.epochs=1")["cached"] is False


def test_corrupt_cache_is_recomputed_with_a_warning(tiny_project: Path):
    p = str(tiny_project)
    run("train", "-p", p, "--split", "b")
    model = tiny_project / "outputs" / "split_b" / "classifier" / "model.npz"
    model.write_bytes(model.read_bytes()[:100])
    r = runner.invoke(app, ["train", "-p", p, "--split", "b"])
    assert r.exit_code == 0, r.output
    assert "unreadable cache entry" in r.output and "recomputing" in r.output
    assert artifacts.load(model, None) is not None


def test_cascade_patchcore_bench_report(tiny_project: Path):
    p = str(tiny_project)
    fit = run("patchcore", "fit", "-p", p)
    assert fit["stats"]["patches_after"] < fit["stats"]["patches_before"]
    assert run("patchcore", "fit", "-p", p)["cached"] is True
    one = run("osr", "-p", p, "--split", "c")
    cas = run("cascade", "-p", p, "--split", "c")
    assert cas["stage2"]["auroc"] == one["msp"]["auroc"]
    assert set(cas["modes"]) == {"strict", "ignore_no_defect"}
    metrics = json.loads((tiny_project / "outputs" / "split_c" / "metrics.json").read_text())
    cm = metrics["cascade"]
    assert set(cm) >= {"strict", "ignore_no_defect", "stage1", "stage2", "versus_one_stage", "provenance"}
    # the modes carry only their decisions; the ranking metrics are stage 2's max softmax, once, labelled
    for mode in ("strict", "ignore_no_defect"):
        assert not {"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "oscr", "closed_set_accuracy"} & set(cm[mode])
    assert cm["stage2"]["auroc"] == metrics["osr"]["msp"]["auroc"] and "max softmax" in cm["stage2"]["score"]
    # the paired difference, recomputed from the two predictions files alone (the same test images, row for row)
    def rows(path: Path) -> dict[str, dict[str, str]]:
        with path.open(encoding="utf-8", newline="") as fh:
            return {r["path"]: r for r in csv.DictReader(fh)}

    one_rows = rows(tiny_project / "outputs" / "split_c" / "osr" / "predictions.csv")
    cas_rows = rows(tiny_project / "outputs" / "split_c" / "cascade" / "predictions.csv")
    assert set(one_rows) == set(cas_rows) and len(one_rows) > 0

    def correct(r: dict[str, str], pred: str) -> bool:
        return r[pred] == ("unknown" if r["role"] == "unknown" else r["true_label"])

    one_acc = sum(correct(r, "pred_label") for r in one_rows.values()) / len(one_rows)
    assert one_acc == pytest.approx(metrics["osr"]["open_set_accuracy"])
    for mode in ("strict", "ignore_no_defect"):
        acc = sum(correct(r, f"pred_{mode}") for r in cas_rows.values()) / len(cas_rows)
        assert acc == pytest.approx(cm[mode]["open_set_accuracy"])
        v = cm["versus_one_stage"][mode]["open_set_accuracy"]
        assert v["difference"] == pytest.approx(one_acc - acc)
        assert v["ci95"][0] <= v["difference"] <= v["ci95"][1]
    b = run("bench", "-p", p, "--split", "c", "--device", "cpu")
    for approach in ("one_stage", "two_stage"):
        assert set(b[approach]["latency"]) == {"median_ms", "p95_ms", "mean_ms"}
        assert b[approach]["throughput_images_per_s"] > 0
    assert b["device"] == "cpu" and b["threads"] >= 1 and b["peak_rss_mb"] > 0
    rep = run("report", "-p", p)
    html = Path(rep["report_html"]).read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert (tiny_project / "outputs" / "split_c" / "plots" / "patchcore_scores.png").is_file()

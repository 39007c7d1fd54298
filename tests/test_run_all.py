import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from osd.cli.app import app

runner = CliRunner()


def test_run_all_then_cached_rerun(tiny_project: Path):
    p = str(tiny_project)
    r = runner.invoke(app, ["run-all", "-p", p, "--splits", "a,c", "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    out = tiny_project / "outputs"
    for s in ("a", "c"):
        for rel in ("classifier/model.npz", "embeddings/embeddings.npz", "osr/thresholds.json",
                    "osr/predictions.csv", "cascade/predictions.csv", "metrics.json", "bench.json",
                    "plots/roc.png", "plots/confusion_one_stage.png", "plots/patchcore_scores.png",
                    "plots/latency.png", "split_manifest.csv"):
            assert (out / f"split_{s}" / rel).is_file(), rel
    assert (out / "patchcore" / "patchcore.npz").is_file()
    assert (out / "report.html").is_file()
    # the NEU + Severstal study (normal.in_domain = false) is unchanged: no normal test images, no
    # normal-class variant, no three-outcome section or table, the cross-domain caveat
    for s in ("a", "c"):
        assert "normal" not in {row["role"] for row in csv.DictReader((out / f"split_{s}/split_manifest.csv").open())}
        assert "three_outcome" not in json.loads((out / f"split_{s}" / "metrics.json").read_text())
    assert not (out / "split_a+normal").exists() and not (out / "summary_three_outcome.csv").exists()
    assert {s["step"] for s in first["steps"]} == {"patchcore fit", "train", "embed", "calibrate", "osr", "cascade",
                                                   "bench", "report"}
    assert any(c.startswith("Cross-domain: stage 1") for c in first["report"]["caveats"])
    assert not any(r["comparison"].startswith("three outcomes") for r in first["report"]["verdict"]["summary"])
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {(r["split"], r["approach"]) for r in rows} >= {
        (s, a) for s in ("a", "c", "mean", "std")
        for a in ("one_stage_mahalanobis", "max_softmax", "cascade_strict", "cascade_ignore_no_defect")}
    # ranking metrics only where there is a score; the cascade's modes have none of their own
    assert all(r["auroc"] for r in rows if not r["approach"].startswith("cascade"))
    assert not any(r["auroc"] for r in rows if r["approach"].startswith("cascade"))
    assert all(r["open_set_accuracy"] for r in rows)
    # how the epoch was chosen is stated as the runs recorded it
    assert any("splits.selection_fraction: 0.5 (" in c for c in first["report"]["caveats"])
    r = runner.invoke(app, ["run-all", "-p", p, "--splits", "a,c", "--json"])
    again = json.loads(r.stdout)
    cached = {(s["split"], s["step"]): s["cached"] for s in again["steps"]}
    assert cached[("-", "patchcore fit")] and cached[("a", "train")] and cached[("c", "bench")]
    assert cached[("-", "report")]  # osr rewrote the same numbers (at a new time): the report is kept
    assert again["seconds"] < first["seconds"]
    # metrics.json is an export: edited by hand, it is not what the report reads, so the report stays
    m = json.loads((out / "split_a" / "metrics.json").read_text())
    m["osr"]["auroc"] = 0.0
    (out / "split_a" / "metrics.json").write_text(json.dumps(m))
    third = json.loads(runner.invoke(app, ["run-all", "-p", p, "--splits", "a,c", "--json"]).stdout)
    assert {s["step"]: s["cached"] for s in third["steps"]}["report"]
    assert third["report"]["rows"] == again["report"]["rows"]
    # a step that is computed again (its record gone) has a new identity: the report is rebuilt from it
    (out / "split_a" / "osr" / "evaluation.npz").unlink()
    fourth = json.loads(runner.invoke(app, ["run-all", "-p", p, "--splits", "a,c", "--json"]).stdout)
    done = {(s["split"], s["step"]): s["cached"] for s in fourth["steps"]}
    assert not done[("a", "osr")] and not done[("-", "report")] and done[("c", "osr")]
    assert fourth["report"]["rows"] == again["report"]["rows"]  # the same numbers, recomputed

"""Issue 22: `osd export` to ONNX with a model card, parity with torch, `osd predict --engine onnx`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ok
from osd.cli.app import app
from osd.pipeline.job import Job

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
runner = CliRunner()


def test_export_writes_graphs_and_a_card_that_agree_with_torch(tiny_project: Path):
    from osd.precision import cpu_has_native_bf16

    p = str(tiny_project)
    # trained in bf16 where the CPU has it: the scores must still be fp32 on every engine
    prec = ["--set", f"project.precision={'bf16' if cpu_has_native_bf16() else 'auto'}"]
    ok("osr", "-p", p, "--split", "a", *prec)
    ok("patchcore", "fit", "-p", p, *prec)
    res = json.loads(ok("export", "-p", p, "--split", "a", "--json", *prec))
    out = Path(res["out_dir"])
    assert {"one_stage.onnx", "stage1.onnx", "model_card.json"} <= set(res["files"])
    card = json.loads((out / "model_card.json").read_text())
    assert card["classes"] and card["one_stage"]["tau"] > 0 and card["stage1"]["threshold"] > 0
    assert card["provenance"]["inputs"]["classifier"] and card["provenance"]["inputs"]["detector"]
    parity = res["parity"]
    assert parity["ok"] and parity["images"] > 10 and parity["n_decisions_differing"] == 0
    assert max(parity["max_relative_difference"].values()) <= 1e-4
    again = json.loads(ok("export", "-p", p, "--split", "a", "--json", *prec))
    assert again["cached"]

    # every score that meets a threshold is fp32 on every engine, whatever the training precision (auto:
    # bf16 on a CPU with bf16 hardware), and the card says so
    assert card["precision"]["graphs"] == "fp32" and card["precision"]["classifier_thresholds_set_at"] == "fp32"
    assert card["precision"]["stage1_threshold_set_at"] == "fp32"
    assert card["precision"]["classifier_trained_in"] == ("bf16" if cpu_has_native_bf16() else "fp32")

    # predict on ONNX Runtime and on torch under precision = auto: the same rows, on test images (a
    # threshold image, whose score defines tau or kappa exactly, can flip on a difference in the 7th
    # digit: no engine promises ties), and the same distances as the study's own
    from osd import config

    listing = tiny_project / "some.txt"
    imgs = [e.path for e in Job.of(config.load(tiny_project)).manifest("a").test()][::3]
    listing.write_text("\n".join(map(str, imgs)) + "\n")
    rows_t = json.loads(ok("predict", str(listing), "-p", p, "--split", "a", "--json", *prec))["rows"]
    rows_o = json.loads(ok("predict", str(listing), "-p", p, "--split", "a", "--engine", "onnx", "--json",
                           *prec))["rows"]
    assert [r["path"] for r in rows_t] == [r["path"] for r in rows_o]
    for a, b in zip(rows_t, rows_o):
        assert (a["one_stage"], a["cascade"], a["closed_class"]) == (b["one_stage"], b["cascade"], b["closed_class"])
        assert b["one_stage_score"] == pytest.approx(a["one_stage_score"], rel=1e-4)
        assert b["stage1_score"] == pytest.approx(a["stage1_score"], rel=1e-4)
    import csv

    with (tiny_project / "outputs" / "split_a" / "osr" / "predictions.csv").open() as f:
        study = {Path(r["path"]).name: float(r["distance"]) for r in csv.DictReader(f)}
    for a in rows_t:
        assert a["one_stage_score"] == pytest.approx(study[Path(a["path"]).name], rel=1e-4)


def test_export_and_onnx_predict_refuse_a_broken_lineage(tiny_project: Path):
    p = str(tiny_project)
    ok("calibrate", "-p", p, "--split", "a")
    ok("export", "-p", p, "--split", "a", "--approach", "one-stage")
    img = str(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    ok("train", "-p", p, "--split", "a", "--force")
    for args in (["export", "--split", "a", "--approach", "one-stage"],
                 ["predict", img, "--split", "a", "--approach", "one-stage", "--engine", "onnx"]):
        r = runner.invoke(app, [*args, "-p", p])
        assert r.exit_code == 1 and "osd calibrate --split a" in r.output and "Traceback" not in r.output, r.output
    ok("calibrate", "-p", p, "--split", "a")  # the chain is whole again; the export is now stale
    r = runner.invoke(app, ["predict", img, "-p", p, "--split", "a", "--approach", "one-stage", "--engine", "onnx"])
    assert r.exit_code == 1 and "osd export --split a" in r.output and "Traceback" not in r.output


def test_an_approximate_stage1_search_serves_predict_and_export_refuses_it(tiny_project: Path):
    """The inverted file's centroids travel with the fit, so predict scores as the study did; the ONNX
    graph searches exactly, so export refuses in one line instead of writing a graph that disagrees."""
    pytest.importorskip("faiss")
    p, s = str(tiny_project), ["--set", "patchcore.search=ivf", "--set", "patchcore.ivf_probe=1"]
    fit = json.loads(ok("patchcore", "fit", "-p", p, *s, "--json"))
    assert fit["stats"]["search"]["search"] == "ivf" and not fit["stats"]["search"]["exact"]
    assert fit["stats"]["search"]["probe"] == 1
    ok("calibrate", "-p", p, "--split", "a", *s)
    img = str(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    first = json.loads(ok("predict", img, "-p", p, "--split", "a", *s, "--json"))["rows"][0]
    again = json.loads(ok("predict", img, "-p", p, "--split", "a", *s, "--json"))["rows"][0]
    assert first["stage1_score"] > 0 and first["stage1_score"] == again["stage1_score"]
    r = runner.invoke(app, ["export", "-p", p, "--split", "a", *s])
    assert r.exit_code == 1 and "patchcore.search=torch" in r.output and "Traceback" not in r.output, r.output
    # refused before a file is written: no lone graph, no lock file, no folder (issue 40, case 3)
    assert not (tiny_project / "outputs" / "split_a" / "export").exists()
    r = runner.invoke(app, ["export", "-p", p, "--split", "a", "--out", str(tiny_project / "exp_ivf"), *s])
    assert r.exit_code == 1 and not (tiny_project / "exp_ivf").exists(), r.output
    # into an existing export: the refused one leaves its graph as it was
    ok("export", "-p", p, "--split", "a", "--approach", "one-stage", "--out", str(tiny_project / "exp"), *s)
    before = {f.name: f.read_bytes() for f in (tiny_project / "exp").iterdir()}
    r = runner.invoke(app, ["export", "-p", p, "--split", "a", "--out", str(tiny_project / "exp"), *s])
    assert r.exit_code == 1 and {f.name: f.read_bytes() for f in (tiny_project / "exp").iterdir()} == before
    assert not [f for f in tiny_project.iterdir() if ".partial-" in f.name]  # no temporary folder left


def test_a_corrupted_or_truncated_graph_is_refused_in_one_line(tiny_project: Path):
    p = str(tiny_project)
    ok("calibrate", "-p", p, "--split", "a")
    r = runner.invoke(app, ["export", "-p", p, "--split", "a", "--approach", "one-stage", "--json"])
    assert r.exit_code == 0 and "TracerWarning" not in r.output, r.output  # the parity check speaks instead
    res = json.loads(r.stdout)
    graph = Path(res["out_dir"]) / "one_stage.onnx"
    img = str(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    good = graph.read_bytes()
    args = ["predict", img, "-p", p, "--split", "a", "--approach", "one-stage", "--engine", "onnx", "--json"]
    # the same size, 4,000 bytes overwritten in the middle: it would load and give NaN scores
    mid = len(good) // 2
    graph.write_bytes(good[:mid] + b"\x7f" * 4000 + good[mid + 4000:])
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "sha256 mismatch" in r.output and "osd export --split a" in r.output, r.output
    assert "Traceback" not in r.output
    graph.write_bytes(good[: len(good) // 3])  # cut short: onnxruntime's InvalidProtobuf, never a traceback
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and str(graph) in r.output and "Traceback" not in r.output, r.output


def test_an_export_folder_of_another_split_is_not_overwritten(tmp_path):
    """Issue 51, item 6: exporting split a into split b's bundle replaced it silently."""
    import json as _json

    import pytest as _pytest

    from osd.errors import ConfigError
    from osd.pipeline.export import _refuse_other_split

    (tmp_path / "model_card.json").write_text(_json.dumps({"split": "b"}))
    with _pytest.raises(ConfigError, match="holds split b's export; exporting split a there would replace it"):
        _refuse_other_split(tmp_path, "a")
    _refuse_other_split(tmp_path, "b")  # the same split: made again in place
    _refuse_other_split(tmp_path / "new", "a")  # an empty folder


def test_a_bundle_s_rebuild_hint_names_its_split_and_never_run_all(tmp_path, capsys):
    import json as _json

    from osd.cli.shared import command
    from osd.errors import ArtifactError
    from osd.pipeline.monitor import _split_of

    (tmp_path / "model_card.json").write_text(_json.dumps({"split": "b"}))
    assert _split_of(tmp_path) == " --split b" and _split_of(tmp_path / "none") == ""

    @command
    def broken(debug: bool = False) -> None:
        raise ArtifactError("bundle damaged", rebuild=f"export{_split_of(tmp_path)} --out {tmp_path}")

    import pytest as _pytest
    import typer

    with _pytest.raises(typer.Exit):
        broken()
    got = capsys.readouterr()
    text = " ".join((got.err + got.out).split())
    assert "export --split b --out" in text and "run-all" not in text

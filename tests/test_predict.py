"""Issue 12: `osd predict` applies the cached models to new images and never trains."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from osd import config
from osd.cli.app import app
from osd.pipeline.job import Job

runner = CliRunner()


def test_predict_without_models_names_the_command_and_trains_nothing(tiny_project: Path):
    img = tiny_project / "neu" / "IMAGES" / "crazing_1.jpg"
    r = runner.invoke(app, ["predict", str(img), "-p", str(tiny_project)])
    assert r.exit_code == 1 and "osd train --split a" in r.output and "Traceback" not in r.output
    assert not (tiny_project / "outputs" / "split_a" / "classifier").exists()


def test_predict_rows_match_the_study_and_unreadable_files_get_a_row(tiny_project: Path):
    p = str(tiny_project)
    assert runner.invoke(app, ["cascade", "-p", p, "--split", "a"]).exit_code == 0
    assert runner.invoke(app, ["osr", "-p", p, "--split", "a"]).exit_code == 0
    out = tiny_project / "outputs" / "split_a"
    study = {r["path"]: r for r in csv.DictReader((out / "osr" / "predictions.csv").open())}
    cascade = {r["path"]: r for r in csv.DictReader((out / "cascade" / "predictions.csv").open())}
    paths = list(study)[:5]
    listing = tiny_project / "list.txt"
    bad = tiny_project / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not an image")
    listing.write_text("\n".join([*paths[:3], str(bad)]) + "\n")
    r = runner.invoke(app, ["predict", str(listing), *paths[3:], "-p", p, "--out", str(tiny_project / "p.csv"),
                            "--json"])
    assert r.exit_code == 1, r.output  # one input was unreadable: every row is still there
    res = json.loads(r.stdout)
    rows = res["rows"]
    assert [x["path"] for x in rows] == [*paths[:3], str(bad), *paths[3:]]
    assert rows[3]["status"] == "unreadable" and rows[3]["reason"]
    for row in (x for x in rows if x["status"] == "ok"):
        assert row["one_stage"] == study[row["path"]]["pred_label"]
        assert abs(row["one_stage_score"] - float(study[row["path"]]["distance"])) <= 1e-4 * abs(row["one_stage_score"])
        # predict's cascade answer is the strict mode's: stage 1's no_defect stands
        assert row["cascade"] == cascade[row["path"]]["pred_strict"]
        assert abs(row["stage1_score"] - float(cascade[row["path"]]["stage1_score"])) < 1e-5 * row["stage1_score"]
    written = list(csv.DictReader((tiny_project / "p.csv").open()))
    assert len(written) == 6 and written[3]["status"] == "unreadable"


def test_predict_api_takes_arrays_and_pil_images(tiny_project: Path):
    from osd.pipeline.predict import predict

    assert runner.invoke(app, ["calibrate", "-p", str(tiny_project), "--split", "b"]).exit_code == 0
    cfg = config.load(tiny_project)
    img = Image.open(next((tiny_project / "neu" / "IMAGES").glob("*.jpg")))
    rows = predict(Job.of(cfg), "b", [img, np.asarray(img), "missing.png"], approach="one-stage")
    assert [r["status"] for r in rows] == ["ok", "ok", "unreadable"]
    assert rows[0]["one_stage_score"] == rows[1]["one_stage_score"] and "cascade" not in rows[0]


def test_a_nan_score_never_becomes_a_decision():
    from osd.pipeline.predict import invalid_scores

    row = {"path": "x.png", "status": "ok", "reason": "", "closed_class": "a", "msp": float("nan"), "kappa": 0.5,
           "one_stage": "a", "one_stage_score": float("nan"), "tau": 3.0, "cascade": "a", "stage1_score": 1.0,
           "stage1_threshold": 2.0}
    out = invalid_scores(row)
    assert out["status"] == "invalid_score" and "not a number" not in out["reason"] and "nan" in out["reason"]
    assert out["one_stage"] is None and out["cascade"] is None and out["closed_class"] is None
    assert out["msp"] is None and out["one_stage_score"] is None and out["stage1_score"] == 1.0
    import json

    json.loads(json.dumps(out, allow_nan=False))  # valid JSON
    inf = invalid_scores({**row, "msp": 0.9, "one_stage_score": 2.0, "stage1_score": float("inf")})
    assert inf["status"] == "invalid_score" and inf["cascade"] is None
    assert invalid_scores({**row, "msp": 0.9, "one_stage_score": 2.0}) == {**row, "msp": 0.9, "one_stage_score": 2.0}


def test_predict_on_an_empty_folder_is_an_error(tiny_project: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from osd.cli.app import app

    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "empty"), "-p", str(tiny_project)])
    assert r.exit_code == 1 and "no images found" in r.output


def test_a_list_of_paths_in_latin_1_or_a_binary_file_named_txt(tmp_path: Path):
    """Issue 51, item 3: a Latin-1 list (written on Windows) or a binary .txt ended in a UnicodeDecodeError
    traceback."""
    import warnings

    from osd.errors import DataError, OsdWarning
    from osd.pipeline.predict import expand_inputs

    (tmp_path / "défaut.png").write_bytes(b"x")
    latin = tmp_path / "list.txt"
    latin.write_bytes("défaut.png\r\n# a comment\r\n".encode("latin-1"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(expand_inputs([latin]))
    assert got == [tmp_path / "défaut.png"] and got[0].is_file()
    assert any(issubclass(w.category, OsdWarning) and "read as Latin-1" in str(w.message) for w in caught)
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(DataError, match="a binary file, not a list of image paths"):
        list(expand_inputs([binary]))


def test_arrays_that_are_not_an_image_are_refused_with_the_reason():
    """Issue 51, item 4: JPEG bytes read with np.frombuffer got status ok and a decision; np.zeros(5) the all-black
    image's scores."""
    from osd.errors import DataError
    from osd.pipeline.predict import array_image

    for bad, reason in [(np.frombuffer(b"\xff\xd8\xff\xe0" * 50, np.uint8), "shape (200,) is not an image"),
                        (np.zeros(5), "shape (5,) is not an image"), (b"\xff\xd8", "bytes are not an image"),
                        (np.zeros((2, 8, 8, 3), np.uint8), "shape (2, 8, 8, 3)"), (3, "shape () is not an image"),
                        (np.full((8, 8), np.nan), "dtype float64 is not an image's pixels")]:
        with pytest.raises(DataError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            array_image(bad)
    assert array_image(np.zeros((8, 8, 1), np.uint8)).shape == (8, 8)
    assert array_image(np.zeros((8, 8, 3), np.uint8)).shape == (8, 8, 3)


def test_ctrl_c_during_predict_out_keeps_the_rows_done_and_says_where(tmp_path):
    """Issue 51, item 7: the rows already predicted are kept beside the output, which is never half-written."""
    import pytest as _pytest

    from osd.cli.line_commands import _predict_rows

    class Interrupted:
        detect_only = False

        def predict(self, inputs, batch_size):  # noqa: ANN001, ANN202
            for i, p in enumerate(inputs):
                if i == 3:
                    raise KeyboardInterrupt
                yield {"path": str(p), "status": "ok", "one_stage_score": 1.5 + i}

    out = tmp_path / "day.csv"
    with _pytest.raises(KeyboardInterrupt, match=r"after 3 of 10 input\(s\): their rows are kept in .*day.partial.csv"):
        _predict_rows(Interrupted(), [f"{i}.png" for i in range(10)], 4, out, False, True)
    assert not out.exists()
    kept = (tmp_path / "day.partial.csv").read_text().splitlines()
    assert len(kept) == 4 and kept[1].startswith("0.png") and "3.5" in kept[3]

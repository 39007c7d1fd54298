"""On the real data in ../shared/data; skipped cleanly when it is absent."""

import json
from pathlib import Path

from typer.testing import CliRunner

from osd.cli.app import app

runner = CliRunner()


def test_data_check_real(real_data: Path, tmp_path: Path):
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(real_data / "NEU-DET"),
                            "--severstal", str(real_data / "severstal")])
    assert r.exit_code == 0
    r = runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["neu_layout"] == "neu-det"
    assert rep["neu_counts"] == {c: 300 for c in rep["neu_counts"]} and len(rep["neu_counts"]) == 6
    assert [Path(p).name for p in rep["duplicates"][0]] == ["patches_101.jpg", "patches_105.jpg"]
    assert rep["normal"]["normal_images"] == 20 and rep["normal"]["defective_images"] == 18
    for s in "abc":
        counts = rep["splits"][s]["counts"]
        assert sum(c["test"] for c in counts.values()) == 360


def test_predict_equals_the_study_on_every_real_test_image(real_data: Path, tmp_path: Path):
    """Issue 19's invariant on the real data: `osd predict` on every test image of split a gives exactly
    the decisions (and the scores, to the CSV's 6 digits) of that split's two predictions.csv. A small
    random-init model keeps it fast: the invariant is about the code path, not the accuracy."""
    from test_lineage import assert_predict_equals_study

    proj = tmp_path / "p"
    r = runner.invoke(app, ["init", str(proj), "--neu", str(real_data / "NEU-DET"),
                            "--severstal", str(real_data / "severstal")])
    assert r.exit_code == 0, r.output
    small = ["classifier.arch=resnet18", "classifier.weights=none", "classifier.image_size=32", "classifier.epochs=1",
             "patchcore.backbone=resnet18", "patchcore.weights=none", "patchcore.image_size=64", "stats.bootstrap=0"]
    sets = [x for kv in small for x in ("--set", kv)]
    for cmd in ("osr", "cascade"):
        r = runner.invoke(app, [cmd, "-p", str(proj), "--split", "a", *sets])
        assert r.exit_code == 0, r.output
    assert assert_predict_equals_study(proj, "a", extra=sets) == 360

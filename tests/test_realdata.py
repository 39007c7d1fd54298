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

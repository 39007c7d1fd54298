"""The Python API (issue 41): osd.Project is what the command line and the notebook both call."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_import_osd_gives_the_project_and_stays_light():
    import subprocess
    import sys

    code = ("import sys, osd; assert 'torch' not in sys.modules; p = osd.Project; "
            "assert 'torch' not in sys.modules and p.__module__ == 'osd.api'; print(osd.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import osd

    assert set(osd.__all__) >= {"Project", "LineReporter", "OsdError", "__version__"}
    with pytest.raises(AttributeError):
        osd.Nothing  # noqa: B018


def test_a_project_runs_its_steps_and_predicts_as_the_cli_does(tiny_project: Path):
    import osd

    lines: list[str] = []
    p = osd.Project(tiny_project, {"classifier.epochs": 1}, reporter=osd.LineReporter(lines.append))
    assert p.config.classifier.epochs == 1 and "Project(" in repr(p)
    cal = p.calibrate("a")
    assert cal.tau > 0 and any("training" in line for line in lines)  # progress reached the reporter
    img = next((tiny_project / "neu" / "IMAGES").glob("*.jpg"))
    rows = p.predict([img], split="a", approach="one-stage")
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["tau"] == pytest.approx(cal.tau)
    # an operating point chosen here is the project's from now on, as `osd calibrate --acceptance` makes it
    again = p.calibrate("a", acceptance=0.9)
    assert "acceptance = 0.9" in (tiny_project / "osd.toml").read_text() and again.acceptance == 0.9
    with pytest.raises(osd.OsdError, match="must be above 0 and below 1"):
        p.patchcore_fit(acceptance=1.5)


def test_summary_frame_says_what_it_needs_without_pandas(tiny_project: Path, monkeypatch):
    import sys

    import pytest

    import osd
    from osd.errors import ConfigError

    monkeypatch.setitem(sys.modules, "pandas", None)  # as on a machine without pandas
    with pytest.raises(ConfigError, match="pip install pandas"):
        osd.Project(tiny_project).summary_frame()
    p = osd.Project(tiny_project)
    assert p.job is p.job and p.job.cfg is p.config  # resolved once per project object


def test_the_api_checks_its_arguments_at_the_door(tiny_project: Path):
    """Issue 51, item 9: a split of 1 or None, seeds='x', acceptance='0.9', max_groups=0, settings [1, 2] and a
    settings string read letter by letter each failed deep inside with a TypeError or AttributeError."""
    import osd

    p = osd.Project(tiny_project)
    for call, message in [(lambda: p.train(1), "train(split=1): a split's name"),
                          (lambda: p.osr(None), "osr(split=None)"),
                          (lambda: p.run_all(seeds="x"), "run_all(seeds='x'): a list of seeds"),
                          (lambda: p.calibrate("a", acceptance="0.9"), "calibrate(acceptance='0.9'): a number"),
                          (lambda: p.unknowns(["x.csv"], max_groups=0), "unknowns(max_groups=0): an integer of at least 2"),
                          (lambda: p.monitor(["x.csv"], window=2), "monitor(window=2)"),
                          (lambda: osd.Project(tiny_project, [1, 2]), "Project(settings=[1, 2])")]:
        with pytest.raises(osd.OsdError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                           .replace("]", r"\]")):
            call()
    assert osd.Project(tiny_project, "classifier.epochs=3").config.classifier.epochs == 3  # one string, one setting


def test_the_monitor_s_new_arguments_are_checked_at_the_door(tmp_path):
    import osd
    from osd.errors import ConfigError

    (tmp_path / "osd.toml").write_text("")
    p = osd.Project(tmp_path)
    with pytest.raises(ConfigError, match="false_alarm_every"):
        p.monitor("day.csv", false_alarm_every=5)
    with pytest.raises(ConfigError, match="variant_column"):
        p.monitor_baseline("day.csv", variant_column=3)
    with pytest.raises(ConfigError, match="window"):
        p.monitor_baseline("day.csv", window=2)

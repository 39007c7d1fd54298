"""osd monitor (issue 42): batches of predict rows against the reference the study stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ok
from osd.cli.app import app
from osd.monitor import DRIFT, OK, Reference, batch_status, batches, check_batch, psi
from osd.pipeline.job import Job

runner = CliRunner()
RNG = np.random.default_rng(0)
REF = Reference(stage1_normal=RNG.normal(10, 1, 400), stage1_threshold=11.6, distance_val=RNG.chisquare(8, 400),
                tau=float(np.quantile(RNG.chisquare(8, 400), 0.95)), acceptance=0.95,
                class_mix={"crack": 0.5, "dent": 0.5})


def _rows(n: int, rng, shift: float = 0.0, dist_scale: float = 1.0, unknown_extra: float = 0.0,
          defects: float = 0.0) -> list[dict]:
    """A batch of a line: good parts (stage-1 scores like the held-out normals) and a share ``defects`` of
    defect images (stage 1 flags them; their distances like the known validation images')."""
    bad = rng.random(n) < defects
    s1 = np.where(bad, rng.normal(20, 1, n), rng.normal(10, 1, n)) + shift
    dist = rng.chisquare(8, n) * dist_scale
    unknown = (dist > REF.tau) | (rng.random(n) < unknown_extra)
    return [{"status": "ok", "stage1_score": s, "one_stage_score": d, "one_stage": "unknown" if u else c,
             "closed_class": c} for s, d, u, c in zip(s1, dist, unknown, rng.choice(["crack", "dent"], n))]


def _statuses(checks) -> dict[str, str]:
    return {c.check: c.status for c in checks}


def test_a_batch_like_the_reference_is_ok_and_false_alarms_stay_at_the_level():
    rng = np.random.default_rng(1)
    good = [batch_status(check_batch(f"g{i}", _rows(200, rng), REF)) for i in range(100)]
    assert good.count(DRIFT) <= 3 and good.count(OK) >= 90
    # defect images (what stage 1 flags, the classifier's input): their one-stage checks
    bad = [[c.status for c in check_batch(f"d{i}", _rows(200, rng, defects=1.0), REF)
            if c.check in ("distances", "unknown_share", "class_mix")] for i in range(100)]
    assert sum(DRIFT in b for b in bad) <= 3 and sum(set(b) == {OK} for b in bad) >= 90


def test_the_classifier_checks_read_the_images_stage_1_flagged():
    """Good parts far from every known class (huge distances, called unknown) are not the classifier's to
    judge in the cascade: a line of good parts with a steady share of defects stays ok."""
    rows = _rows(400, np.random.default_rng(6), defects=0.04)
    for r in rows:
        if r["stage1_score"] <= REF.stage1_threshold:  # a good part stage 1 passes
            r["one_stage_score"], r["one_stage"] = 500.0, "unknown"
    checks = {c.check: c for c in check_batch("line", rows, REF)}
    flagged = sum(r["stage1_score"] > REF.stage1_threshold for r in rows)
    assert checks["distances"].n == checks["unknown_share"].n == flagged
    assert checks["distances"].status == OK and checks["unknown_share"].status == OK
    # the stage-1 score check reads what stage 1 passed: the steady defects do not move it
    assert checks["stage1_scores"].status == OK
    assert checks["stage1_scores"].n == len(rows) - flagged


def test_a_brightness_like_shift_of_stage_1_scores_is_flagged():
    checks = {c.check: c for c in check_batch("b", _rows(200, np.random.default_rng(2), shift=1.0), REF)}
    assert checks["stage1_scores"].status == DRIFT and checks["stage1_flagged"].status == DRIFT
    assert checks["stage1_scores"].psi is None  # ~180 against ~370: its no-drift value alone is ~0.07 (issue 49)


def test_injected_unknown_images_raise_the_unknown_share_and_are_flagged():
    rows = _rows(300, np.random.default_rng(4), unknown_extra=0.2, defects=1.0)
    checks = {c.check: c for c in check_batch("b", rows, REF)}
    c = checks["unknown_share"]
    assert c.status == DRIFT and c.observed > 0.2 and c.expected == pytest.approx(0.05)
    assert checks["distances"].status == OK  # the distances of the known images did not move


def test_the_class_mix_and_the_windows():
    rows = _rows(200, np.random.default_rng(4), defects=1.0)
    for r in rows:
        r["closed_class"] = "crack"
        r["one_stage"] = "crack" if r["one_stage"] != "unknown" else "unknown"
    assert _statuses(check_batch("b", rows, REF))["class_mix"] == DRIFT
    windows = batches([("f1", rows[:120]), ("f2", rows[120:])], window=50)
    assert [len(r) for _, r in windows] == [50, 50, 50, 50]
    assert psi(np.arange(100.0), np.arange(100.0)) == pytest.approx(0.0, abs=1e-9)


def test_a_batch_too_small_is_not_tested():
    checks = check_batch("b", _rows(3, np.random.default_rng(5)), REF)
    assert checks and all(c.p_value is None for c in checks) and batch_status(checks) == "not tested"


def _predict_csv(project: Path, out: Path) -> Path:
    from osd import config

    listing = project / "imgs.txt"
    listing.write_text("\n".join(str(e.path) for e in Job.of(config.load(project)).manifest("a").test()) + "\n")
    r = runner.invoke(app, ["predict", str(listing), "-p", str(project), "--split", "a", "--approach", "one-stage",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_monitor_runs_on_the_project_and_on_the_export_bundle_alone(tiny_project: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    rows = _predict_csv(tiny_project, tmp_path / "day1.csv")
    r = runner.invoke(app, ["monitor", str(rows), str(rows), "-p", p, "--json", "--plot", str(tmp_path / "m.png")])
    assert r.exit_code in (0, 3, 4), r.output
    res = json.loads(r.stdout)
    # the tiny project has 4 validation images: too few for the distances' reference (5), so that check is left
    # out; the unknown share and the class mix are tested
    assert {c["check"] for c in res["checks"]} >= {"unknown_share", "class_mix"} and "Bonferroni" in res["rule"]
    assert list(res["batches"]) == ["1: day1.csv", "2: day1.csv"] and (tmp_path / "m.png").is_file()
    assert r.exit_code == {"ok": 0, "watch": 3, "drift": 4}[res["status"]]

    ok("export", "-p", p, "--split", "a", "--approach", "one-stage", "--out", str(tmp_path / "bundle"))
    alone = tmp_path / "pc"
    shutil.copytree(tmp_path / "bundle", alone)  # the inspection PC: the bundle and the rows, no project
    r2 = runner.invoke(app, ["monitor", str(rows), str(rows), "--export-dir", str(alone), "--json"])
    assert r2.exit_code == r.exit_code, r2.output
    assert json.loads(r2.stdout)["checks"] == res["checks"]  # the bundle's reference is the project's
    (alone / "monitor_reference.npz").write_bytes(b"not an npz")
    r3 = runner.invoke(app, ["monitor", str(rows), "--export-dir", str(alone)])
    assert r3.exit_code == 1 and "sha256 mismatch" in r3.output and "Traceback" not in r3.output, r3.output


def test_unknown_groups_are_chosen_without_labels_and_match_separated_clusters():
    from sklearn.metrics import adjusted_rand_score

    from osd.pipeline.unknowns import choose_groups

    rng = np.random.default_rng(6)
    centres = rng.normal(0, 5, (3, 16))
    truth = np.repeat([0, 1, 2], 20)
    x = centres[truth] + rng.normal(0, 0.5, (60, 16))
    labels, scores = choose_groups(x)
    assert len(set(labels)) == 3 and adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert max(scores, key=scores.get) == 3
    assert list(choose_groups(x[:2])[0]) == [0, 0]


def test_monitor_unknowns_groups_the_unknown_rows_with_contact_sheets(tiny_project: Path, tmp_path: Path):
    from osd import config
    from osd.api import Project

    p = str(tiny_project)
    tau = Project(tiny_project).calibrate("a").tau  # rows carry the threshold they were decided by
    unknown = [e.path for e in Job.of(config.load(tiny_project)).manifest("a").test() if e.role == "unknown"]
    rows = tmp_path / "rows.csv"
    rows.write_text("path,status,one_stage,one_stage_score,tau,closed_class\n"
                    + "".join(f"{q},ok,unknown,1e9,{tau!r},x\n" for q in unknown))
    r = runner.invoke(app, ["monitor", str(rows), "-p", p, "--unknowns", "--json"])
    assert r.exit_code == {"ok": 0, "watch": 3, "drift": 4, "not tested": 5}[json.loads(r.stdout)["status"]], r.output
    g = json.loads(r.stdout)["unknowns"]
    assert g["images"] == len(unknown) and sum(x["size"] for x in g["groups"]) == len(unknown)
    assert all(Path(x["contact_sheet"]).is_file() for x in g["groups"]) and "silhouette" in g["method"]
    r2 = runner.invoke(app, ["monitor", str(rows), "--export-dir", str(tmp_path), "--unknowns"])
    assert r2.exit_code == 1 and "needs the project's classifier" in r2.output


def test_rows_from_another_split_or_export_are_refused(tmp_path: Path):
    from osd.errors import DataError
    from osd.pipeline.monitor import belongs

    rows = [{"status": "ok", "tau": str(REF.tau * 1.5), "one_stage_score": "1"}]
    with pytest.raises(DataError, match=r"decided with tau = .*another split or export"):
        belongs(tmp_path / "x.csv", rows, REF)
    belongs(tmp_path / "x.csv", [{"status": "ok", "tau": repr(REF.tau)}], REF)  # its own: fine


def test_the_class_mix_is_a_two_sample_test_when_the_reference_kept_its_count():
    """The reference's shares are counted on a finite set (the study's test decisions): batches drawn
    from the same classes as a reference of 120 decisions stay at the level; taking the shares as exact
    flags the reference's own noise."""
    from dataclasses import replace

    from scipy.stats import chi2_contingency

    rng = np.random.default_rng(7)
    classes = ["crack", "dent", "scratch", "pit"]
    flagged = {None: 0, 120: 0}
    for _ in range(300):
        ref_draw = list(rng.choice(classes, 120))
        mix = {c: ref_draw.count(c) / 120 for c in classes}
        rows = [{"status": "ok", "one_stage_score": 1.0, "one_stage": c, "closed_class": c} for c in rng.choice(classes, 100)]
        for n_ref in flagged:
            ref = replace(REF, stage1_normal=None, class_mix=mix, class_n=n_ref)
            mix_check = {c.check: c for c in check_batch("b", rows, ref)}["class_mix"]
            flagged[n_ref] += mix_check.p_value < 0.01
    assert flagged[120] / 300 <= 0.015 < flagged[None] / 300  # the two-sample test holds its level
    counts = [[30, 30, 30, 30], [25, 25, 25, 25]]
    check = _mix_check([25] * 4, {c: 0.25 for c in classes}, 120)
    assert check.p_value == pytest.approx(chi2_contingency(counts, correction=False)[1])
    assert check.test.startswith("chi-square test of homogeneity")


def _mix_check(counts: list[int], shares: dict[str, float], n_ref: int):
    from dataclasses import replace

    rows = [{"status": "ok", "one_stage_score": 1.0, "one_stage": c, "closed_class": c}
            for c, k in zip(shares, counts) for _ in range(k)]
    ref = replace(REF, stage1_normal=None, class_mix=shares, class_n=n_ref)
    return {c.check: c for c in check_batch("b", rows, ref)}["class_mix"]


def _csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    import csv

    columns = columns or list(rows[0]) if rows else (columns or ["path", "status"])
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _open_set_rows(n: int = 40) -> list[dict]:
    rows = _rows(n, np.random.default_rng(3), defects=1.0)
    return [{"path": f"{i}.png", "status": "ok", "reason": "", **r, "tau": repr(REF.tau),
             "stage1_threshold": repr(REF.stage1_threshold)} for i, r in enumerate(rows)]


@pytest.mark.parametrize("case, message", [
    ("nan_scores", "row 2: one_stage_score = 'nan' is not a finite number"),
    ("text_tau", "row 5: tau = 'abc' is not a finite number"),
    ("text_score", "row 2: one_stage_score = 'abc' is not a finite number"),
    ("infinite", "row 2: one_stage_score = 'inf' is not a finite number"),
    ("nan_tau_everywhere", "tau = 'nan' is not a finite number"),
    ("no_tau_column", "no column tau: not rows osd predict wrote for this split"),
    ("no_score_column", "no column one_stage_score"),
    ("header_only", "no rows (empty, or a header alone)"),
    ("detection_rows", "rows of a detection project (no_defect / defect) carry no one-stage columns"),
])
def test_rows_are_validated_once_at_load(tmp_path: Path, case: str, message: str):
    """Issue 51: NaN, text and infinite numbers, missing columns and empty files were tested as if fine (status
    ok or not tested, exit 0) or ended in a traceback; each is now one line naming the file, row and column."""
    from osd.errors import DataError
    from osd.pipeline.monitor import read_rows, validate_rows

    rows = _open_set_rows()
    columns = list(rows[0])
    if case == "nan_scores":
        for r in rows[:10]:
            r["one_stage_score"] = "nan"
    elif case == "text_tau":
        rows[3]["tau"] = "abc"
    elif case == "text_score":
        rows[0]["one_stage_score"] = "abc"
    elif case == "infinite":
        rows[0]["one_stage_score"] = "inf"
    elif case == "nan_tau_everywhere":
        for r in rows:
            r["tau"] = "nan"
    elif case == "no_tau_column":
        columns.remove("tau")
    elif case == "no_score_column":
        columns.remove("one_stage_score")
    elif case == "header_only":
        rows = []
    elif case == "detection_rows":
        columns = ["path", "status", "reason", "decision", "stage1_score", "stage1_threshold"]
        for r in rows:
            r["decision"] = "defect"
    path = _csv(tmp_path / "day.csv", rows, columns)
    with pytest.raises(DataError) as exc:
        validate_rows(path, read_rows(path), REF)
    assert message in str(exc.value) and "day.csv" in str(exc.value)


def test_a_day_of_unreadable_images_says_why_nothing_was_tested_and_exits_5(tiny_project: Path, tmp_path: Path):
    from osd.api import Project

    rows = [{"path": f"{i}.png", "status": "unreadable", "reason": "truncated JPEG", "one_stage": "",
             "one_stage_score": "", "tau": "", "closed_class": "", "stage1_score": "", "stage1_threshold": ""}
            for i in range(30)]
    day = _csv(tmp_path / "day.csv", rows)
    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a")
    res = Project(tiny_project).monitor([day], "a")
    assert res.worst == "not tested"
    assert any("none of its 30 images was readable" in n and "truncated JPEG" in n for n in res.notes)
    r = runner.invoke(app, ["monitor", str(day), "-p", p, "--plot", str(tmp_path / "m.png"), "--unknowns", "--json"])
    assert r.exit_code == 5, r.output  # not 1: a day without unknowns keeps the monitor's own result
    notes = json.loads(r.stdout)["notes"]
    assert any("not written, no check was tested" in n for n in notes) and not (tmp_path / "m.png").exists()
    assert any(n.startswith("--unknowns: no image was called unknown") for n in notes)
    r = runner.invoke(app, ["monitor", str(tmp_path), "-p", p])
    assert r.exit_code == 1 and "a folder; give the CSV files" in r.output


def test_json_output_is_valid_json_whatever_the_numbers(capsys):
    from osd.cli.render import emit_json

    emit_json({"statistic": float("nan"), "p": [float("inf"), 0.5]})
    assert json.loads(capsys.readouterr().out) == {"statistic": None, "p": [None, 0.5]}

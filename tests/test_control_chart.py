"""The monitor as a control chart (issue 49): a baseline from the line, limits from its own windows, a
stated false-alarm rate over time, EWMA beside the batch chart, and bad input refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from osd.control_chart import (
    MIN_WINDOWS,
    baseline_limits,
    chart,
    ewma_arl,
    ewma_limit,
    window_statistics,
    windows,
)
from osd.errors import ArtifactError, DataError
from osd.monitor import Reference, psi_meaningful

RNG = np.random.default_rng(0)
REF = Reference(stage1_normal=RNG.normal(10, 1, 400), stage1_threshold=11.6, distance_val=RNG.chisquare(8, 400),
                tau=30.0, acceptance=0.95, class_mix={"crack": 0.5, "dent": 0.5})


def _line(n: int, rng, variant: str = "A", shift: float = 0.0, defects: float = 0.2, unknowns: float = 0.0):
    """Rows of a line: good parts (stage-1 scores ~ N(10, 1) + shift, variant B a little higher), a share of
    defects (flagged; distances chi-square(8)), some of them unknown (larger distances)."""
    base = 10.0 if variant == "A" else 10.4
    bad = rng.random(n) < defects
    s1 = np.where(bad, rng.normal(20, 1, n), rng.normal(base, 0.5, n)) + shift
    unk = bad & (rng.random(n) < unknowns)
    dist = np.where(unk, rng.chisquare(8, n) * 4, rng.chisquare(8, n))
    return [{"path": f"{variant}/{i}.png", "status": "ok", "variant": variant, "stage1_score": float(s),
             "stage1_threshold": REF.stage1_threshold, "one_stage_score": float(d), "tau": REF.tau,
             "one_stage": "unknown" if d > REF.tau else "crack", "closed_class": "crack"}
            for i, (s, d) in enumerate(zip(s1, dist))]


def test_the_ewma_limit_gives_the_tabled_run_length():
    """Lucas and Saccucci (1990): lambda 0.2, L 2.962 -> in-control ARL 500; a 1-sigma shift is found in ~10."""
    assert ewma_arl(2.962, 0.2) == pytest.approx(500, rel=0.01)
    assert ewma_arl(2.962, 0.2, shift=1.0) == pytest.approx(10.5, rel=0.05)
    assert ewma_arl(ewma_limit(2000.0)) == pytest.approx(2000, rel=0.01)


def test_window_statistics_read_what_the_classifier_judges():
    rows = _line(200, np.random.default_rng(1), defects=0.5)
    s = window_statistics(rows, REF.stage1_threshold)
    assert 0.4 < s["stage1_flagged"] < 0.6 and s["n:stage1_flagged"] == 200
    assert 9.5 < s["stage1_scores"] < 10.5  # the passed ones: good parts only
    assert s["n:unknown_share"] == pytest.approx(200 * s["stage1_flagged"])  # the flagged ones are judged


def test_runs_of_variants_are_in_control_when_the_baseline_holds_them():
    """Production in runs (100 of A, 100 of B, ...): the baseline's own windows carry the runs' variation."""
    rng = np.random.default_rng(2)
    def runs(k: int) -> list[dict]:
        return [r for i in range(k) for r in _line(100, rng, "AB"[i % 2])]
    limits = baseline_limits([window_statistics(w, REF.stage1_threshold) for w in windows(runs(12), 25)])
    later = [(f"w{i}", window_statistics(w, REF.stage1_threshold)) for i, w in enumerate(windows(runs(40), 25))]
    points = chart(later, limits, 25, false_alarm_every=10_000)
    assert not any(p.alarm for p in points)  # 4000 images of an unchanged line: no alarm
    shifted = [(f"s{i}", window_statistics(w, REF.stage1_threshold))
               for i, w in enumerate(windows([r for _ in range(4) for r in _line(100, rng, "A", shift=0.6)], 25))]
    hits = [p for p in chart(later[:8] + shifted, limits, 25) if p.alarm and p.batch.startswith("s")]
    assert hits and hits[0].statistic == "stage1_scores"


def test_a_small_persistent_change_is_found_by_the_ewma_where_no_single_batch_stands_out():
    rng = np.random.default_rng(4)
    limits = baseline_limits([window_statistics(w, REF.stage1_threshold) for w in windows(_line(600, rng), 25)])
    drift = [(f"d{i}", window_statistics(w, REF.stage1_threshold)) for i, w in enumerate(windows(
        _line(1000, rng, shift=0.25), 25))]
    points = [p for p in chart(drift, limits, 25) if p.statistic == "stage1_scores"]
    first = next((i for i, p in enumerate(points) if p.alarm), None)
    assert first is not None and first <= 20  # within 500 images
    assert max(abs(p.z) for p in points[: first + 1]) < 4  # no batch alone beyond a 4-sigma limit


def test_a_share_never_seen_in_the_baseline_keeps_a_binomial_spread():
    stats = [{"unknown_share": 0.0, "n:unknown_share": 20.0} for _ in range(MIN_WINDOWS)]
    lim = baseline_limits(stats)["unknown_share"]
    assert lim.sd == pytest.approx(0.5 / np.sqrt(20.5))  # the binomial spread on the arcsine scale
    assert baseline_limits(stats[:MIN_WINDOWS - 1]) == {}


def test_psi_is_shown_only_where_it_means_something():
    assert not psi_meaningful(25, 120) and not psi_meaningful(100, 120) and psi_meaningful(500, 800)


# ---------------------------------------------------------------- the pipeline: baseline made, used, refused

@pytest.fixture
def line(tmp_path: Path, monkeypatch):
    from osd.pipeline import monitor as m

    where = tmp_path / "baseline.json"
    state = {"ref": REF}
    monkeypatch.setattr(m, "_reference", lambda job, split, export_dir: (state["ref"], "test reference", where))
    return tmp_path, where, state


def _csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_a_baseline_is_made_used_and_refused_when_it_does_not_belong(line):
    from osd.pipeline.monitor import make_line_baseline, monitor

    tmp, where, state = line
    rng = np.random.default_rng(5)
    first = _csv(tmp / "first_days.csv", [r for i in range(6) for r in _line(100, rng, "AB"[i % 2])])
    made = make_line_baseline(None, [first], window=25, variant_column="variant")
    assert set(made.baseline.limits) == {"A", "B"} and where.is_file()
    later = _csv(tmp / "week.csv", [r for i in range(8) for r in _line(100, rng, "AB"[i % 2])])
    result = monitor(None, [later])
    assert result.charts and result.baseline == str(where) and "one false alarm per 10,000 images" in result.rule
    assert set(result.statuses.values()) <= {"ok", "drift"} and result.to_dict()["charts"]
    with pytest.raises(DataError, match="the baseline .* was made with windows of 25"):
        monitor(None, [later], window=50)
    c = _csv(tmp / "new_variant.csv", _line(100, rng, "C"))
    with pytest.raises(DataError, match="rows of variant 'C' .* which the baseline .* never saw"):
        monitor(None, [c])
    state["ref"] = Reference(**{**REF.__dict__, "distance_val": REF.distance_val * 1.01})  # a refit: other models
    with pytest.raises(DataError, match="made against other models"):
        monitor(None, [later])
    state["ref"] = REF
    d = json.loads(where.read_text())
    d["baseline"]["limits"]["A"]["stage1_scores"]["sd"] *= 10  # widened by hand
    where.write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match="does not match its seal"):
        monitor(None, [later])


def test_a_baseline_with_too_few_rows_says_how_many(line):
    from osd.pipeline.monitor import make_line_baseline

    tmp, where, _ = line
    few = _csv(tmp / "few.csv", _line(120, np.random.default_rng(6)))
    with pytest.raises(DataError, match=f"at least {MIN_WINDOWS} windows with values \\({MIN_WINDOWS * 25} readable"):
        make_line_baseline(None, [few], window=25)
    assert not where.exists()
    with pytest.raises(DataError, match="--variant-column grade: no such column"):
        make_line_baseline(None, [few], window=25, variant_column="grade")


def test_without_a_baseline_the_output_says_the_rate_is_per_batch(line):
    from osd.pipeline.monitor import monitor

    tmp, _, _ = line
    rows = _csv(tmp / "day.csv", _line(200, np.random.default_rng(7)))
    result = monitor(None, [rows], window=25)
    assert any("no baseline from the line" in n and "--make-baseline" in n for n in result.notes)


def test_the_control_chart_is_drawn_with_its_page(line):
    from osd.api import _plotted
    from osd.pipeline.monitor import make_line_baseline, monitor

    tmp, _, _ = line
    rng = np.random.default_rng(8)
    make_line_baseline(None, [_csv(tmp / "b.csv", _line(400, rng))], window=25)
    result = _plotted(monitor(None, [_csv(tmp / "w.csv", _line(300, rng) + _line(300, rng, shift=1.0))]),
                      tmp / "chart.png")
    assert Path(result.plot).stat().st_size > 5000 and "control charts" in Path(result.page).read_text()
    assert any(p.alarm for p in result.charts)


def test_the_stated_rate_holds_with_a_small_baseline_and_skewed_shares():
    """A baseline of 1,000 images (40 windows of 25), an unknown share near 8% (2 in a window: skewed), then
    30,000 images of the same line: about 3 false alarms at one per 10,000 (normal-theory limits on the raw
    share, from the windows alone, gave 1.3 per 10,000 here and 12.6 on the real line: docs/results.md)."""
    from osd.control_chart import resampled_windows

    rng = np.random.default_rng(11)

    def rows(n: int) -> list[dict]:
        d = rng.chisquare(8, n) * np.where(rng.random(n) < 0.03, 4, 1)
        return [{"status": "ok", "one_stage_score": float(x), "one_stage": "unknown" if x > 15.5 else "a"} for x in d]

    base = rows(1000)
    limits = baseline_limits([window_statistics(w, None) for w in windows(base, 25)],
                             resampled_windows(base, 25, None))
    stream = [(str(i), window_statistics(w, None)) for i, w in enumerate(windows(rows(30_000), 25))]
    alarms = sum(bool(p.alarm) for p in chart(stream, limits, 25, false_alarm_every=10_000))
    assert alarms <= 8


def test_the_command_line_makes_a_baseline_then_charts_and_exits_4_on_an_alarm(line):
    from typer.testing import CliRunner

    from osd.cli.app import app

    tmp, where, _ = line
    (tmp / "osd.toml").write_text("")
    rng = np.random.default_rng(9)
    first = _csv(tmp / "first.csv", _line(600, rng))
    r = CliRunner().invoke(app, ["monitor", str(first), "-p", str(tmp), "--make-baseline", "--window", "25"])
    assert r.exit_code == 0 and "The line's baseline: 600 rows in windows of 25" in r.output, r.output
    same = _csv(tmp / "same.csv", _line(300, rng))
    r = CliRunner().invoke(app, ["monitor", str(same), "-p", str(tmp)])
    assert r.exit_code == 0 and "no alarm in 12 batch(es)" in r.output, r.output
    darker = _csv(tmp / "darker.csv", _line(300, rng) + _line(300, rng, shift=1.0))
    r = CliRunner().invoke(app, ["monitor", str(darker), "-p", str(tmp), "--json"])
    assert r.exit_code == 4 and json.loads(r.stdout)["charts"], r.output
    r = CliRunner().invoke(app, ["monitor", str(same), "-p", str(tmp), "--variant-column", "variant"])
    assert r.exit_code == 1 and "--variant-column is a setting of the baseline" in r.output

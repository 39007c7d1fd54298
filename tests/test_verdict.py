"""The statistical rules of the answer (osd.verdict, osd.metrics.paired_difference, the report's words)."""

from __future__ import annotations

import numpy as np
import pytest

from osd import verdict as V
from osd.metrics import EncodedResults, bootstrap_p_value, paired_difference


def _run(split: str, d: float, ci: tuple[float, float] | None, p: float | None, seed: int = 0) -> V.RunComparison:
    ex = None if ci is None else bool(ci[0] > 0 or ci[1] < 0)
    return V.RunComparison(split, seed, d, ci, p, None if p is None else ex)


def test_three_split_differences_010_012_002_are_not_called_better():
    runs = [_run("a", 0.10, (0.05, 0.15), 0.001), _run("b", 0.12, (0.07, 0.17), 0.001),
            _run("c", 0.02, (-0.03, 0.07), 0.4)]
    v = V.overall("ignore_no_defect", "open_set_accuracy", runs)
    assert v.claim == V.NO_CLEAR_DIFFERENCE
    lo, hi = v.ci95
    assert lo == pytest.approx(-0.0515, abs=2e-3) and hi == pytest.approx(0.2115, abs=2e-3)
    assert v.mean_difference == pytest.approx(0.08)


def test_seeds_are_averaged_within_their_split_before_the_interval():
    runs = [_run("a", 0.10, None, None, 0), _run("a", 0.20, None, None, 1), _run("b", 0.12, None, None, 0),
            _run("c", 0.14, None, None, 0)]
    v = V.overall("x", "open_set_accuracy", runs)
    assert v.split_means == {"a": pytest.approx(0.15), "b": 0.12, "c": 0.14}
    assert v.n_splits == 3 and v.n_seeds == 2
    # the split means spread less (variance 0.00023) than split a's two seeds imply (0.005 / 2, averaged over the
    # splits' seed counts: 0.0033): the interval rests on the floor, not on the t interval of the means
    from scipy.stats import t
    half = t.ppf(0.975, 2) * np.sqrt(0.005 * np.mean([1 / 2, 1, 1]) / 3)
    assert v.ci95 == pytest.approx((0.41 / 3 - half, 0.41 / 3 + half))
    assert v.ci95[1] - v.ci95[0] > np.diff(V.t_interval([0.15, 0.12, 0.14]))[0]


def test_fewer_than_three_splits_make_no_overall_claim_however_many_seeds():
    runs = [_run(s, 0.2 + 0.001 * k, (0.1, 0.3), 0.001, k) for s in "ab" for k in range(5)]
    v = V.overall("x", "open_set_accuracy", runs)
    assert v.claim == V.NO_OVERALL_CLAIM and v.ci95 is not None and v.ci95[0] > 0


@pytest.mark.parametrize("seed", range(20))
def test_holm_never_adds_a_run(seed: int):
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(int(rng.integers(1, 8))):
        d = float(rng.normal(0, 0.05))
        lo, hi = d - abs(rng.normal(0.04, 0.03)), d + abs(rng.normal(0.04, 0.03))  # lopsided intervals too
        runs.append(_run(f"s{i}", d, (lo, hi), float(rng.uniform(0, 0.1))))
    for r in V.with_holm(runs):
        if r.holm_significant:
            assert r.excludes_zero


def test_holm_step_down_stops_at_the_first_non_significant_p():
    assert V.holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert V.holm([0.001, 0.02, 0.04]) == [True, True, True]
    assert V.holm([None, 0.01]) == [None, True]


def test_a_lopsided_interval_that_includes_zero_is_not_significant_after_holm():
    # [-0.01, 0.10] around +0.08: not significant before the correction, so not after it
    r = V.with_holm([_run("a", 0.08, (-0.01, 0.10), 0.03)])[0]
    assert r.excludes_zero is False and r.holm_significant is False


def _pair(n_boot: int) -> dict:
    classes = ["a", "b"]
    rng = np.random.default_rng(0)
    true = rng.choice(["a", "b", "x"], 120)
    unk = true == "x"
    p1 = np.where(rng.random(120) < 0.85, np.where(unk, "unknown", true), "a")
    p2 = np.where(rng.random(120) < 0.75, np.where(unk, "unknown", true), "a")
    a = EncodedResults(true, p1, np.where(unk, "a", true), None, unk, classes)
    b = EncodedResults(true, p2, np.where(unk, "a", true), None, unk, classes)
    return paired_difference(a, b, ("open_set_accuracy",), unk, n_boot, 0)["open_set_accuracy"]


def test_bootstrap_zero_is_not_tested_and_says_so():
    v = _pair(0)
    assert v["p_value"] is None and v["excludes_zero"] is None and v["ci95"] is None
    r = V.run_comparison("a", 0, v)
    assert not r.tested
    verdict = V.overall("x", "open_set_accuracy", [r, V.run_comparison("b", 0, v), V.run_comparison("c", 0, v)])
    from osd.report.answer import _runs_words

    assert "not tested" in _runs_words(verdict)
    assert verdict.count(V.ONE_STAGE_BETTER) == 0


def test_p_value_comes_from_the_replicates_and_agrees_with_the_interval():
    v = _pair(2000)
    assert v["replicates"] == 2000 and v["nan_replicates"] == 0
    assert 0 < v["p_value"] <= 1
    assert (v["p_value"] < 0.05) == v["excludes_zero"] or abs(v["p_value"] - 0.05) < 0.01
    assert bootstrap_p_value(np.array([0.1] * 99)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.array([np.nan])) is None
    assert bootstrap_p_value(np.array([-0.1, 0.1])) == 1.0


def test_nan_replicates_are_counted_not_dropped_without_a_word():
    class Sometimes:
        def __init__(self, nan_every: int):
            self.n, self.calls = nan_every, 0

        def metrics(self, idx, keys):
            self.calls += 1
            return {k: (float("nan") if self.calls % self.n == 0 else 0.5) for k in keys}

    class Fixed:
        def metrics(self, idx, keys):
            return {k: 0.4 for k in keys}

    v = paired_difference(Sometimes(5), Fixed(), ("m",), np.zeros(10, bool), 100, 0)["m"]
    assert v["nan_replicates"] == 20


def _cascade(split: str, versus: dict):
    from osd.records import CascadeResult

    return CascadeResult(split, [], 0.0, None, {}, {}, 0.0, None, versus_one_stage=versus)


def _outcomes(split: str, versus: dict):
    from osd.records import OutcomesResult

    return OutcomesResult(split, {}, {}, versus, {})


def test_known_accuracy_among_detected_never_enters_the_paired_verdict():
    from osd.report.answer import Run, verdicts

    block = {"versus": {"one_stage_minus_cascade_strict": {
        "known_accuracy_detected": {"difference": 0.3, "ci95": [0.2, 0.4], "excludes_zero": True, "p_value": 0.001},
        "three_outcome_accuracy": {"difference": -0.3, "ci95": [-0.4, -0.2], "excludes_zero": True, "p_value": 0.001}}}}
    found = verdicts([Run(s, 0, outcomes=_outcomes(s, block["versus"])) for s in "abc"], True)
    assert {v.metric for v in found} == {"three_outcome_accuracy"}


def test_the_answer_leads_with_the_comparison_that_means_something_on_the_data():
    from osd.report.answer import Run, answer, verdicts

    def entry(d):
        return {"difference": d, "ci95": [d - 0.02, d + 0.02], "excludes_zero": True, "p_value": 0.001}

    runs = [Run(s, 0, cascade=_cascade(s, {"strict": {"open_set_accuracy": entry(0.7 + e)},
                                           "ignore_no_defect": {"open_set_accuracy": entry(-0.05 + e)}}),
                outcomes=_outcomes(s, {"one_stage_minus_cascade_strict": {"three_outcome_accuracy": entry(-0.4 + e)},
                                       "one_stage_normal_class_minus_cascade_strict": {
                                           "three_outcome_accuracy": entry(-0.1 + e)}}))
            for s, e in zip("abc", (0.0, 0.01, -0.01))]
    cross = answer(verdicts(runs, False), False)
    assert cross[0].startswith("The cascade is better on open-set accuracy against the cascade, ignore_no_defect")
    assert "(the cascade ahead)" in cross[0]
    assert "Strict mode is not the comparison" in cross[-1]
    line = answer(verdicts(runs, True), True, "0.888 [0.832, 0.937]")
    assert line[0].startswith("The cascade is better on three-outcome accuracy")
    assert "-0.100 on average (the cascade ahead)" in line[0]  # the normal-class variant, not the locked -0.4
    assert "0.888 [0.832, 0.937]" in line[-1]
    assert len(line) <= 3 and not any("one-stage better" in s.lower() for s in line)

"""The answer at its edges (issue 39): intervals that keep their coverage at 0 and 1 and inside the
metric's range, no verdict from a value that does not vary by split, Holm that cannot reject said so,
repeated splits refused, an overall interval no narrower than the seeds' own noise, like-for-like leads."""

from __future__ import annotations

import numpy as np
import pytest

from osd import verdict as V
from osd.proportion import clopper_pearson


def _run(split: str, d: float, seed: int = 0, p: float | None = 0.001, replicates: int = 1000) -> V.RunComparison:
    ci = (d - 0.02, d + 0.02)
    return V.RunComparison(split, seed, d, ci, p, bool(ci[0] > 0 or ci[1] < 0), replicates=replicates)


# 1. single rates: exact intervals, never zero width at 0 or 1

def test_a_rate_of_72_of_72_has_an_exact_lower_bound_below_096():
    from osd.metrics import metric_intervals

    labels = ["a", "b"] * 36
    ci = metric_intervals(labels, labels, labels, None, np.zeros(72, bool), ["a", "b"], n_boot=200, seed=0)
    lo, hi = ci["closed_set_accuracy"]
    assert lo == pytest.approx(0.9501, abs=1e-3) and lo < 0.96 and hi == 1.0
    assert ci["open_set_accuracy"] == pytest.approx([lo, hi])


def test_rates_get_exact_intervals_even_without_bootstrap_replicates():
    from osd.metrics import metric_intervals

    true = ["a"] * 20 + ["unknown"] * 10
    pred = ["a"] * 20 + ["unknown"] * 5 + ["a"] * 5
    unk = np.r_[np.zeros(20, bool), np.ones(10, bool)]
    ci = metric_intervals(true, pred, ["a"] * 30, None, unk, ["a", "b"], n_boot=0)
    assert ci["unknown_rejection"] == pytest.approx(list(clopper_pearson(5, 10)))
    assert "open_set_macro_f1" not in ci  # not a count: only with bootstrap replicates


def test_the_detection_studys_360_of_360_pass_rate_is_not_1_1():
    from osd.detection import evaluate

    r = evaluate(np.zeros(360), np.ones(40), threshold=0.5, n_boot=100)
    lo, hi = r.intervals95["normal_pass_rate"]
    assert lo == pytest.approx(0.9898, abs=1e-3) and hi == 1.0
    assert r.intervals95["detection_rate"][0] == pytest.approx(0.9119, abs=1e-3)


def test_three_outcome_rates_count_their_own_images():
    from osd.three_outcome import ThreeOutcome

    kind = np.array([0] * 10 + [1] * 5 + [2] * 30)
    true = ["a"] * 10 + ["unknown"] * 5 + ["no_defect"] * 30
    enc = ThreeOutcome(true, true, kind, ["a", "b"])
    counts = enc.rate_counts()
    assert counts["normal_pass_rate"] == (30, 30) and counts["defect_detection_rate"] == (15, 15)
    assert counts["three_outcome_accuracy"] == (45, 45)
    assert clopper_pearson(30, 30)[0] == pytest.approx(0.8843, abs=1e-3)


@pytest.mark.parametrize("true_rate", [0.99, 1.0, 0.9])
def test_a_single_rates_interval_covers_the_truth_in_at_least_93_percent_of_400_repetitions(true_rate: float):
    rng = np.random.default_rng(7)
    n, hits = 72, 0
    for _ in range(400):
        lo, hi = clopper_pearson(int(rng.binomial(n, true_rate)), n)
        hits += lo <= true_rate <= hi
    assert hits / 400 >= 0.93


# 6. the overall interval: floored by the seeds' noise, covering the truth

def test_the_overall_interval_is_no_narrower_than_the_seeds_noise_allows():
    # the real study's shape: three split means that agree closely, seeds within a split that do not
    by_split = {"a": [0.03, 0.09], "b": [0.02, 0.08], "c": [0.025, 0.085]}
    mean, (lo, hi) = V.split_level_interval(by_split)
    means = [np.mean(v) for v in by_split.values()]
    naive = V.t_interval(means)
    assert hi - lo > 5 * (naive[1] - naive[0])
    from scipy.stats import t
    pooled = np.mean([np.var(v, ddof=1) for v in by_split.values()])
    assert hi - lo == pytest.approx(2 * t.ppf(0.975, 2) * np.sqrt(pooled / 2 / 3))
    assert lo < 0 < hi  # 0.055 on average, yet not shown apart from zero


def test_the_overall_interval_covers_the_truth_in_at_least_93_percent_of_400_repetitions():
    rng = np.random.default_rng(3)
    truth, tau, sigma, hits = 0.03, 0.02, 0.04, 0
    for _ in range(400):
        effects = truth + rng.normal(0, tau, 3)
        by_split = {f"s{i}": list(e + rng.normal(0, sigma, 2)) for i, e in enumerate(effects)}
        _, (lo, hi) = V.split_level_interval(by_split)
        hits += lo <= truth <= hi
    assert hits / 400 >= 0.93


# 3. intervals inside their range

def test_an_interval_over_splits_never_leaves_the_range_of_its_metric():
    from osd.report.answer import interval_over_runs

    runs = [V.RunComparison(s, k, d, (d - 0.1, d + 0.1), 0.001, True) for s, d in (("a", 0.95), ("b", -0.6),
                                                                                    ("c", 0.99)) for k in (0, 1)]
    v = V.overall("x", "unknown_rejection", runs)
    assert -1.0 <= v.ci95[0] and v.ci95[1] <= 1.0
    _, ci, _ = interval_over_runs([("a", 0, 0.0, None), ("b", 0, 0.9, None), ("c", 0, 1.0, None)])
    assert 0.0 <= ci[0] and ci[1] <= 1.0


# 2. a value that does not vary by split

def test_three_splits_with_one_shared_normal_set_give_no_split_level_verdict_on_normal_pass_rate():
    runs = [_run(s, -0.90) for s in "abc"]
    v = V.overall("three outcomes, strict", "normal_pass_rate", runs)
    assert v.claim == V.SPLIT_INVARIANT and v.ci95 is None


def test_the_summary_shows_a_split_invariant_rate_once_with_its_own_interval():
    from osd.report.answer import interval_over_runs

    own = list(clopper_pearson(27, 30))
    mean, ci, how = interval_over_runs([(s, 0, 0.9, own) for s in "abc"], metric="normal_pass_rate")
    assert mean == 0.9 and list(ci) == own and "same in every split" in how


def test_a_stage_1_value_is_the_same_in_every_split_seed_by_seed_and_its_seeds_pool():
    """Issue 48, item 3: two seeds, each its own fit: the pass rate is constant over splits within a seed and
    differs between seeds. Not three replicates (a t interval on df = 2), not 'cascade better' [-1, -0.75]."""
    from osd.report.answer import interval_over_runs

    runs = [_run(s, d, k) for s in "abc" for k, d in ((0, -0.90), (1, -0.95))]
    v = V.overall("three outcomes, strict", "normal_pass_rate", runs)
    assert v.claim == V.SPLIT_INVARIANT and v.ci95 is None
    vals = [(s, k, p, list(clopper_pearson(round(p * 60), 60)), 60) for s in "abc" for k, p in ((0, 0.90), (1, 0.95))]
    mean, ci, how = interval_over_runs(vals, metric="normal_pass_rate")
    assert mean == pytest.approx(111 / 120) and list(ci) == pytest.approx(list(clopper_pearson(111, 120)))
    assert "2 seeds" in how and "pooled count" in how


def test_a_value_equal_in_every_split_by_coincidence_stays_a_replicate_with_a_nonzero_interval():
    """A closed-set accuracy of 1.0 in every split is no stage-1 fact: no dagger, and no [1.000, 1.000]."""
    from osd.report.answer import interval_over_runs

    own = list(clopper_pearson(72, 72))
    mean, ci, how = interval_over_runs([(s, 0, 1.0, own) for s in "abc"], metric="closed_set_accuracy")
    assert mean == 1.0 and "same in every split" not in how and ci[1] - ci[0] > 0.01 and ci[1] <= 1.0
    v = V.overall("x", "closed_set_accuracy", [_run(s, 0.0) for s in "abc"])
    assert v.claim != V.SPLIT_INVARIANT


def test_one_split_whose_seeds_agree_shows_a_run_s_interval_not_a_zero_width_range():
    from osd.report.answer import interval_over_runs

    own = list(clopper_pearson(72, 72))
    _, ci, how = interval_over_runs([("a", 0, 1.0, own), ("a", 1, 1.0, own)], metric="closed_set_accuracy")
    assert list(ci) == own and ci[1] > ci[0] and "same for every seed" in how


def test_one_split_with_seeds_is_not_called_a_95_percent_interval():
    from osd.report.answer import interval_over_runs

    _, ci, how = interval_over_runs([("a", 0, 0.9, None), ("a", 1, 0.8, None)])
    assert ci == (0.8, 0.9) and "not a confidence interval" in how


# 4. Holm at small B

def test_b_200_with_6_runs_is_reported_as_untestable():
    from osd.report.answer import _runs_words

    runs = [_run(s, 0.05, k, p=2 / 201, replicates=200) for s in "abc" for k in (0, 1)]
    v = V.overall("ignore_no_defect", "open_set_accuracy", runs)
    assert not v.holm_can_reject and v.count(V.ONE_STAGE_BETTER) == 0
    words = _runs_words(v)
    assert "untestable at B = 200" in words and "at least 239" in words and "0 of" not in words
    assert V.replicates_needed(6) == 239 and V.holm_can_reject(239, 6) and not V.holm_can_reject(238, 6)


def test_run_all_says_when_the_bootstrap_is_too_small_for_holm():
    from osd.study import _holm_note

    assert "stats.bootstrap >= 239" in _holm_note(200, 6)[0]
    assert _holm_note(1000, 6) == [] and _holm_note(0, 6) == []


# 5. repeated splits

def test_splits_with_the_same_partition_are_refused_when_the_config_loads():
    from osd.config import from_dict
    from osd.errors import ConfigError

    a = {"known": ["w", "x", "y"], "unknown": ["z"]}
    with pytest.raises(ConfigError, match=r"splits\.a2: the same known classes as splits\.a"):
        from_dict({"splits": {"a": a, "a2": {"known": ["y", "x", "w"], "unknown": ["z"]}}})
    from_dict({"splits": {"a": a, "b": {"known": ["w", "x", "z"], "unknown": ["y"]}}})  # another partition: fine


# 7. like for like

def _outcomes(split: str, versus: dict) -> object:
    from osd.records import OutcomesResult

    return OutcomesResult(split, {}, {}, versus, {})


def _entry(d: float) -> dict:
    return {"difference": d, "ci95": [d - 0.02, d + 0.02], "excludes_zero": True, "p_value": 0.001,
            "replicates": 1000}


def test_the_in_domain_answer_leads_with_the_normal_class_variant_against_the_strict_cascade():
    from osd.report.answer import Run, answer, verdicts

    locked_vs = {"three_outcome_accuracy": _entry(-0.46), "normal_pass_rate": _entry(-0.9)}
    runs = [Run(s, 0, outcomes=_outcomes(s, {"one_stage_minus_cascade_strict": locked_vs,
                                             "one_stage_normal_class_minus_cascade_strict": {
                                                 "three_outcome_accuracy": _entry(0.03 + 0.01 * i)}}))
            for i, s in enumerate("abc")]
    found = verdicts(runs, True)
    locked = [v for v in found if v.comparison == "three outcomes, strict"]
    assert {v.metric for v in locked} == {"three_outcome_accuracy"}  # normal pass rate 0 by construction: a fact
    words = answer(found, True, "0.937 [0.895, 0.972]")
    assert words[0].startswith("The one-stage method with normal as a known class is better on three-outcome "
                               "accuracy against the cascade, strict")
    assert "(the one-stage method with normal as a known class ahead)" in words[0]
    assert "these splits of this data set" in words[0]


# 8. secondary tests labelled

def test_only_the_leading_comparison_is_the_primary_test():
    from osd.report.answer import Run
    from osd.report.build import verdict

    def cascade(split: str, d: float) -> object:
        from osd.records import CascadeResult

        return CascadeResult(split, [], 0.0, None, {}, {}, 0.0, None, versus_one_stage={
            "ignore_no_defect": {"open_set_accuracy": _entry(d), "unknown_rejection": _entry(d)}})

    v, _ = verdict([Run(s, 0, cascade=cascade(s, 0.02 + 0.01 * i)) for i, s in enumerate("abc")], False)
    roles = {(r["mode"], r["key"]): r["role"] for r in v["rows"]}
    assert roles[("ignore_no_defect", "open_set_accuracy")] == "primary"
    assert roles[("ignore_no_defect", "unknown_rejection")] == "secondary (exploratory)"


# 12. what a threshold accepts, in words

def test_a_threshold_on_too_few_images_is_not_said_to_accept_95_percent():
    from osd.osr.thresholds import AcceptanceThreshold, acceptance_words

    few = acceptance_words(AcceptanceThreshold(0.95, quiet=True).fit(np.arange(10.0)).summary())
    assert "set to accept 95%" not in few and "largest of 10" in few and "19 are needed" in few and "91%" in few
    many = acceptance_words(AcceptanceThreshold(0.95).fit(np.arange(100.0)).summary())
    assert many.startswith("set to accept 95% of calibration images (on 100;")


# 15. warnings said once

def test_small_images_and_small_validation_sets_are_said_once(tmp_path):
    import warnings

    from PIL import Image

    from osd.osr.thresholds import AcceptanceThreshold, warn_small_samples
    from osd.patchcore.stage1 import Stage1Sizes, crop_samples

    paths = []
    for i in range(30):
        p = tmp_path / f"{i}.png"
        Image.new("L", (40, 30), 120).save(p)
        paths.append(p)
    sizes = Stage1Sizes(image_size=32, batch_size=4, crop_size=64, crop_stride=64, dark_threshold=10,
                        max_dark_fraction=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crop_samples(paths, sizes)
        thr = {n: AcceptanceThreshold(0.95, n, quiet=True).fit(np.arange(24.0)) for n in ("tau", "kappa", "energy")}
        warn_small_samples(thr, "split a")
    lines = [str(w.message) for w in caught]
    assert len(lines) == 2, lines
    assert lines[0].startswith("30 normal image(s) smaller than normal.crop_size = 64") and "27 more" in lines[0]
    assert lines[1].startswith("split a: tau, kappa, energy set on only 24 scores")


# 13. operating points: the test columns with their exact intervals

def test_operating_points_carry_exact_intervals_on_their_test_shares():
    from osd.osr.thresholds import operating_points

    points = operating_points(np.arange(200.0), np.arange(50.0), np.arange(150.0, 250.0))
    p90 = points[0]
    assert p90["target"] == 0.9 and p90["test_accepted"] == 1.0
    assert p90["test_accepted_ci95"] == pytest.approx(list(clopper_pearson(50, 50)))
    k = int(np.sum(np.arange(150.0, 250.0) > p90["threshold"]))
    assert p90["test_rejected_ci95"] == pytest.approx(list(clopper_pearson(k, 100)))
    assert points[-1]["threshold"] is None and "999 needed" in points[-1]["note"]  # 0.999 on 200 scores


def test_with_the_calibration_size_the_pass_rate_interval_is_for_the_procedure_over_fits():
    from osd.report.answer import interval_over_runs

    vals = [(s, k, p, list(clopper_pearson(round(p * 60), 60)), 60, 60) for s in "abc" for k, p in ((0, 0.90),
                                                                                                  (1, 0.95))]
    mean, ci, how = interval_over_runs(vals, metric="normal_pass_rate")
    pooled = clopper_pearson(111, 120)
    assert mean == pytest.approx(111 / 120) and "over fits" in how
    assert ci[0] < pooled[0] and ci[1] > pooled[1] and ci[1] <= 1.0  # wider: each fit's own noise is in it


def test_nan_replicates_lower_the_b_that_holm_s_check_uses():
    runs = [V.RunComparison(s, 0, 0.05, (0.01, 0.09), 0.002, True, nan_replicates=300, replicates=1000)
            for s in "abc"]
    v = V.overall("x", "open_set_accuracy", runs)
    assert v.replicates == 700


def test_a_prediction_row_holds_the_score_that_decided_exactly():
    from osd.csvrows import row_cell

    for x in (855.9123456789012, 0.1 + 0.2, 1e-300, np.float64(2.0000001234567)):
        assert float(row_cell(x)) == float(x)
    assert row_cell(None) == "" and row_cell(float("nan")) == "nan"


def test_the_command_line_says_thin_thresholds_once_per_split(capsys):
    """Issue 51: four warnings for one split (tau / kappa, the baselines', a variant's, PatchCore's) become one
    line per split, naming every threshold, at the end of the command."""
    import warnings

    from osd.cli.shared import command
    from osd.osr.thresholds import AcceptanceThreshold, warn_small_samples

    @command
    def step(debug: bool = False) -> None:
        thr = {n: AcceptanceThreshold(0.95, n, quiet=True).fit(np.arange(24.0)) for n in ("tau", "kappa")}
        warn_small_samples(thr, "split a")
        warn_small_samples({"energy": thr["tau"]}, "split a: the baselines' thresholds")
        warn_small_samples({"tau": thr["tau"]}, "split b")
        AcceptanceThreshold(0.95, "PatchCore threshold (calibration crops)").fit(np.arange(10.0))
        warnings.warn("something else", UserWarning, stacklevel=1)

    step()
    err = capsys.readouterr()
    text = " ".join((err.out + err.err).split())
    assert text.count("thresholds set on too few scores") == 3  # split a, split b, the study (PatchCore's)
    assert "split a: thresholds set on too few scores" in text and "tau, kappa (24 scores" in text
    assert "the baselines' thresholds: energy (24 scores" in text


def test_a_project_without_normal_images_says_what_the_one_stage_study_found():
    """Issue 51: the answer box of a defect-classes-only project, not just 'No comparison yet'."""
    from osd.report.answer import answer

    row = {"runs": 3, "closed_set_accuracy": 0.98, "closed_set_accuracy_cell": "0.980 [0.95, 0.99]",
           "known_acceptance": 0.94, "known_acceptance_cell": "0.940 [0.91, 0.96]", "unknown_rejection": 0.8,
           "unknown_rejection_cell": "0.800 [0.74, 0.85]", "open_set_accuracy_cell": "0.890 [0.86, 0.92]"}
    words = answer([], False, one_stage=row, acceptance=0.95)
    assert "closed-set accuracy 0.980 [0.95, 0.99]" in words[0] and "rejects 0.800 [0.74, 0.85]" in words[0]
    assert "accept 95% of the known validation images" in words[0] and "osd init --normal" in words[1]
    assert answer([], False)[0].startswith("No comparison yet")


def test_a_paired_difference_equal_in_every_replicate_shows_no_zero_width_interval():
    r = V.run_comparison("a", 0, {"difference": 0.0, "ci95": [0.0, 0.0], "excludes_zero": False, "p_value": 1.0,
                                  "replicates": 1000})
    assert r.ci95 is None and r.tested and r.excludes_zero is False


def test_approaches_alike_on_every_image_are_said_to_be_so_not_too_few_runs():
    runs = [V.run_comparison(s, 0, {"difference": 0.0, "ci95": [0.0, 0.0], "excludes_zero": False, "p_value": 1.0,
                                    "replicates": 1000}) for s in "abc"]
    v = V.overall("strict", "closed_set_accuracy", runs)
    assert v.claim == V.NO_CLEAR_DIFFERENCE and v.ci95 is None and "decide alike on every test image" in v.reason

"""The answer to the research question, from each run's paired comparisons, and the headline table.

Which comparison leads depends on the configured data:
- NEU + Severstal (normal images from another source): the cascade in ``ignore_no_defect`` mode on
  open-set accuracy. ``strict`` cannot win there: NEU has no defect-free images, so every stage-1
  "no defect" call on a NEU image is an error by construction.
- The line's own normal images (``normal.in_domain``): the three-outcome comparison (``no_defect``,
  a known class, ``unknown``) of the one-stage method **with normal as one more known class** against
  the cascade in ``strict`` mode, which is how a cascade runs on a line; three-outcome accuracy
  leads. That pair is like for like: both can answer ``no_defect``. The locked one-stage method has
  no ``no_defect`` answer, so against the cascade it loses (share of normals in the test set) x
  (cascade pass rate) on three-outcome accuracy by construction; its normal pass rate (0) and
  defect detection rate (1) are facts, shown, never paired in a verdict (:data:`BY_CONSTRUCTION`).

The statistics (split as the unit of replication, Holm over per-run bootstrap tests) live in
:mod:`osd.verdict`; this module only chooses, aggregates and words them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from osd import verdict as stats
from osd.records import BenchResult, CascadeResult, OsrResult, OutcomesResult
from osd.report.format import fmt, fmt_ci, fmt_signed
from osd.types import JsonObject

HUMAN = {
    "closed_set_accuracy": "closed-set accuracy", "auroc": "AUROC (unknown vs known)", "aupr_out": "AUPR-out",
    "aupr_in": "AUPR-in", "fpr_at_95_tpr": "FPR@95 (unknowns accepted)", "known_acceptance": "known acceptance",
    "unknown_rejection": "unknown rejection", "open_set_accuracy": "open-set accuracy",
    "open_set_macro_f1": "open-set macro-F1", "oscr": "OSCR",
    "normal_pass_rate": "normal pass rate", "defect_detection_rate": "defect detection rate",
    "known_accuracy_detected": "known accuracy (detected)", "three_outcome_accuracy": "three-outcome accuracy",
    "balanced_three_outcome_accuracy": "balanced three-outcome accuracy (the mean of the good, known and unknown "
                                       "parts' rates, free of the test mix)",
    "three_outcome_macro_f1": "three-outcome macro-F1", "stage1_image_auroc": "stage-1 AUROC (images)",
}
NORMAL_CLASS_VS_STRICT = "three outcomes, one-stage with normal class vs strict"
COMPARISON_HUMAN = {
    "ignore_no_defect": "cascade, ignore_no_defect (stage 2 decides every image)",
    "strict": "cascade, strict (stage 1's no_defect stands)",
    "three outcomes, strict": "cascade, strict, with the line's good parts in the test set",
    "three outcomes, ignore_no_defect": "cascade, ignore_no_defect, with the line's good parts in the test set",
    NORMAL_CLASS_VS_STRICT: "cascade, strict, with the line's good parts in the test set",
}
# the first approach of each comparison, in words (the locked method unless named here)
FIRST_HUMAN = {NORMAL_CLASS_VS_STRICT: "the one-stage method with normal as a known class"}
# the locked one-stage method has no no_defect answer: against it these hold by construction (0 and 1)
BY_CONSTRUCTION = ("normal_pass_rate", "defect_detection_rate")
# known accuracy among *detected* known images divides by a different set of images for each approach
# (a cascade that calls hard known defects no_defect improves it), so it never enters the paired verdict
NOT_PAIRED = {"known_accuracy_detected"}


@dataclass(frozen=True)
class Run:
    """One (split, seed) run: the records its steps cached (values as metrics.json shows them), read once."""

    split: str
    seed: int
    osr: OsrResult | None = None
    cascade: CascadeResult | None = None
    outcomes: OutcomesResult | None = None
    bench: BenchResult | None = None

    @property
    def name(self) -> str:
        return f"split {self.split.upper()}, seed {self.seed}"

    def comparisons(self, source: str) -> JsonObject:
        """The paired differences a run recorded: ``cascade`` (one-stage minus each mode) or
        ``three_outcome`` (first minus second approach)."""
        if source == "cascade":
            return self.cascade.versus_one_stage if self.cascade else {}
        return self.outcomes.versus if self.outcomes else {}



@dataclass(frozen=True)
class RunPage:
    """What the report shows of one run: its records, its figures, the settings that produced it and
    differ from the current osd.toml (per section)."""

    run: Run
    plots: list[str]
    provenance_notes: dict[str, list[str]]

    @property
    def split(self) -> str:
        return self.run.split

    @property
    def seed(self) -> int:
        return self.run.seed

def _plan(in_domain: bool) -> list[tuple[str, str, str, tuple[str, ...]]]:
    from osd.decide import MODES
    from osd.pipeline.cascade import MODE_METRICS
    from osd.three_outcome import METRICS as THREE

    three = tuple(m for m in THREE if m not in NOT_PAIRED)
    locked = tuple(m for m in three if m not in BY_CONSTRUCTION)
    known_unknown = [(m, "cascade", m, MODE_METRICS) for m in MODES]
    outcomes = [(NORMAL_CLASS_VS_STRICT, "three_outcome", "one_stage_normal_class_minus_cascade_strict", three)]
    outcomes += [(f"three outcomes, {m}", "three_outcome", f"one_stage_minus_cascade_{m}", locked) for m in MODES]
    return outcomes + known_unknown if in_domain else known_unknown + outcomes


def lead_of(in_domain: bool) -> tuple[str, str]:
    """(comparison, metric) the answer leads with on this data."""
    # in-domain: prevalence-free, so the number of good parts in the folder cannot decide the sign (issue 48)
    return (NORMAL_CLASS_VS_STRICT, "balanced_three_outcome_accuracy") if in_domain else ("ignore_no_defect",
                                                                                 "open_set_accuracy")


def verdicts(runs: list[Run], in_domain: bool, hidden: dict[str, tuple[str, ...]] | None = None
             ) -> list[stats.MetricVerdict]:
    """Every comparison x metric that the runs hold, each read over runs by :func:`osd.verdict.overall`
    (``hidden``: each split's hidden classes when the runs' splits are a complete design)."""
    out = []
    for comparison, source, key, metrics in _plan(in_domain):
        for metric in metrics:
            per = []
            for run in runs:
                v = (run.comparisons(source).get(key) or {}).get(metric)
                if isinstance(v, dict) and v.get("difference") is not None:
                    per.append(stats.run_comparison(run.split, run.seed, v))
            if per:
                images = (image_variance(runs, comparison, metric) if hidden else None)
                out.append(stats.overall(comparison, metric, per, hidden=hidden, image_variance=images))
    return out


def per_image_differences(runs: list[Run], mode: str) -> dict[int, dict[str, dict[str, float]]] | None:
    """``{seed: {split: {image: one-stage right - cascade right}}}`` on open-set accuracy (a known image is
    right when named its class, an unknown one when called unknown), from the runs' prediction rows; None
    when a run has none (records cached before rows were kept)."""
    from osd.decide import UNKNOWN

    out: dict[int, dict[str, dict[str, float]]] = {}
    for run in runs:
        if not (run.osr and run.cascade and run.osr.rows.cells and run.cascade.rows.cells):
            return None
        one = {r["path"]: r["pred_label"] for r in run.osr.rows.dicts()}
        d = {}
        for r in run.cascade.rows.dicts():
            if r["path"] in one:
                truth = UNKNOWN if r["role"] == "unknown" else r["true_label"]
                d[r["path"]] = float(one[r["path"]] == truth) - float(r[f"pred_{mode}"] == truth)
        out.setdefault(run.seed, {})[run.split] = d
    return out


def image_variance(runs: list[Run], comparison: str, metric: str, n_boot: int = 1000) -> float | None:
    """The shared test images' variance of the complete design's mean difference (open-set accuracy of a
    cascade mode; :func:`osd.verdict.joint_image_variance`); None for other metrics."""
    from osd.decide import MODES

    if comparison not in MODES or metric != "open_set_accuracy":
        return None
    per = per_image_differences(runs, comparison)
    return None if per is None else stats.joint_image_variance(per, n_boot)


def _ahead(difference: float, first: str) -> str:
    """Who is ahead, in words, beside a signed difference (first minus cascade)."""
    if not np.isfinite(difference) or abs(difference) < 5e-4:
        return "level"
    return f"{first} ahead" if difference > 0 else "the cascade ahead"


def _claim_words(v: stats.MetricVerdict) -> str:
    against = COMPARISON_HUMAN.get(v.comparison, v.comparison)
    first = FIRST_HUMAN.get(v.comparison, "the one-stage method")
    base = f"{v.n_splits} split(s), {v.n_seeds} seed(s) each"
    if v.claim == stats.SPLIT_INVARIANT:
        per_seed = dict.fromkeys(r.seed for r in v.runs)
        if len(per_seed) > 1:
            first_run = {seed: next(r for r in v.runs if r.seed == seed) for seed in per_seed}
            said = "; ".join(f"seed {seed}: {fmt_signed(r.difference)}" + (f" {fmt_ci(r.ci95)}" if r.ci95 else "")
                             for seed, r in first_run.items())
            return (f"{first[0].upper()}{first[1:]} minus the {against}, {HUMAN[v.metric]}, the same in every split "
                    f"of a seed ({said}); each seed has its own stage-1 fit and test normals, so a value that does "
                    "not vary by split is a fact of each seed's test images, not a verdict over splits.")
        return (f"{first[0].upper()}{first[1:]} minus the {against}, {HUMAN[v.metric]}: "
                f"{fmt_signed(v.mean_difference)} ({_ahead(v.mean_difference, first)}) in every split; a value that does "
                "not vary by split is a fact of these test images, not a verdict over splits.")
    if v.claim == stats.NO_OVERALL_CLAIM:
        per = "; ".join(f"split {r.split.upper()} seed {r.seed}: {fmt_signed(r.difference)}"
                        + (f" {fmt_ci(r.ci95)}" if r.ci95 else "") for r in v.runs[:6])
        return (f"No overall claim is possible from {v.n_splits} split(s) (at least {stats.MIN_SPLITS} are needed). "
                f"{first[0].upper()}{first[1:]} minus the {against}, {HUMAN[v.metric]}, per run "
                f"(positive: {first} ahead): {per}{' ...' if len(v.runs) > 6 else ''}.")
    lo, hi = v.ci95
    if v.complete_design:
        base = f"all {v.n_splits} splits of the complete design, {v.n_seeds} seed(s) each"
    head = {stats.ONE_STAGE_BETTER: f"{first[0].upper()}{first[1:]} is better", stats.CASCADE_BETTER:
            "The cascade is better", stats.NO_CLEAR_DIFFERENCE: "Neither approach is clearly better"}[v.claim]
    if v.complete_design:
        noise = ("training noise (what the hidden classes' own effects leave) and the test images' noise (a "
                 "bootstrap over the images the splits share)" if v.image_noise else
                 "training noise (what the hidden classes' own effects leave; the test images the splits share are "
                 "not resampled for this metric)")
        return (f"{head} on {HUMAN[v.metric]} against the {against}: {fmt_signed(v.mean_difference)} on average "
                f"({_ahead(v.mean_difference, first)}) over {base}, 95% interval {fmt_signed(lo)} to "
                f"{fmt_signed(hi)}. These splits are every split there is of this data set, so the interval is "
                f"about {noise}, not about which classes happened to be hidden.")
    return (f"{head} on {HUMAN[v.metric]} against the {against}: {fmt_signed(v.mean_difference)} on average "
            f"({_ahead(v.mean_difference, first)}), 95% interval {fmt_signed(lo)} to {fmt_signed(hi)} over the "
            f"means of {base}; a claim about these splits of this data set, whose known test images they share.")


def _runs_words(v: stats.MetricVerdict) -> str:
    if not v.tested_runs:
        return "Per run: not tested (stats.bootstrap = 0 gives no bootstrap replicates)."
    if not v.holm_can_reject:
        b, m = v.replicates, v.tested_runs
        return (f"Per run: untestable at B = {b} bootstrap replicates with {m} runs: the smallest p-value a run can "
                f"reach, 2/(B+1) = {2 / (b + 1):.4f}, is above Holm's first threshold 0.05/{m} = {0.05 / m:.4f}, so no "
                f"run could be significant whatever the data; set stats.bootstrap to at least "
                f"{stats.replicates_needed(m)} for a per-run test.")
    nan = sum(r.nan_replicates for r in v.runs)
    extra = f" ({nan} bootstrap replicate(s) undefined and left out)" if nan else ""
    return (f"Per run (each test speaks for its own split's test images), the paired bootstrap favours one-stage "
            f"in {v.count(stats.ONE_STAGE_BETTER)} and the cascade in {v.count(stats.CASCADE_BETTER)} of "
            f"{v.tested_runs} runs after Holm's correction{extra}.")


def answer(found: list[stats.MetricVerdict], in_domain: bool, normal_pass: str | None = None,
           target: float | None = None, target_words: str | None = None, mix: dict[str, int] | None = None,
           one_stage: JsonObject | None = None, acceptance: float | None = None) -> list[str]:
    """Two or three short sentences: the leading comparison, the per-run tests, and why the other mode
    is not the answer (or, on a line's own data, how many good parts the cascade passes). Without a
    comparison (no normal images: no cascade), what the one-stage study found (``one_stage``: its headline
    row), then how to add the comparison."""
    if not found:
        how = ("To compare it with the cascade, add defect-free images (osd init --normal GOOD_FOLDER, or "
               "normal.folder / normal.severstal_root in osd.toml) and run osd run-all: stage 1 is fitted on them.")
        if not one_stage or one_stage.get("closed_set_accuracy") is None:
            return ["No comparison yet: the cascade has not run (it needs normal images; see the caveats below).", how]
        target = f" (tau set to accept {acceptance:.0%} of the known validation images)" if acceptance else ""
        return [f"The one-stage method alone (no normal images, so no cascade to compare with): it names the known "
                f"classes with closed-set accuracy {one_stage['closed_set_accuracy_cell']}, accepts "
                f"{one_stage['known_acceptance_cell'] if one_stage.get('known_acceptance') is not None else '-'} of "
                f"the known test images{target}, and rejects {one_stage['unknown_rejection_cell']} of the unknown "
                f"ones as unknown (open-set accuracy {one_stage['open_set_accuracy_cell']}; {one_stage['runs']} "
                "run(s), intervals as in the table).", how]
    comparison, metric = lead_of(in_domain)
    lead = next((v for v in found if (v.comparison, v.metric) == (comparison, metric)), found[0])
    out = [_claim_words(lead), _runs_words(lead)]
    if in_domain and mix:
        out.append(f"The test mix of a run: {mix.get('normal', 0)} good part(s), {mix.get('known', 0)} known-class and "
                   f"{mix.get('unknown', 0)} unknown-class defect(s); the lead weighs the three kinds equally, so the "
                   "number of good parts in the folder cannot decide it (three-outcome accuracy, weighted by this mix, "
                   "is in the table beside it).")
    if in_domain:
        if normal_pass:
            aim = target_words or (f" (its threshold is set to accept {target:.0%} of calibration good parts)"
                                   if target else "")
            out.append(f"The cascade passes {normal_pass} of the held-out good parts{aim}; the locked one-stage "
                       "method has no 'no defect' answer, so it passes none and flags every defect (facts by "
                       "construction, not verdicts).")
    elif any(v.comparison == "strict" for v in found):
        out.append("Strict mode is not the comparison: every test image is a defect image, so each stage-1 "
                   "'no defect' call is wrong by construction.")
    return out


def interval_over_runs(values: list[tuple], hidden: dict[str, tuple[str, ...]] | None = None, metric: str = ""
                       ) -> tuple[float | None, tuple[float, float] | None, str]:
    """Mean over runs and the interval that fits the runs at hand, with its name. ``values``: (split, seed,
    value, its 95% interval[, images it is over]). One run: its own interval over its test images. A value the
    same in every split by construction, seed by seed (the cascade's normal pass rate: one stage 1, one set
    of test normals per seed; :func:`osd.verdict.invariant_over_splits`): one seed, that run's interval over
    its own images; several seeds, their pooled count's exact interval (with the images counted) for the mean
    of these fits' pass rates. One split, several seeds: the range over seeds (said to be no confidence
    interval), or one run's interval where every seed gives the same value. Several splits: the verdict's
    t interval over split means, its variance floored by the seeds' own (and by the runs' image noise where
    every run agrees), in [0, 1]. Never an interval of zero width."""
    vals = [(v[0], v[1], v[2], v[3], v[4] if len(v) > 4 else None) for v in values
            if v[2] is not None and np.isfinite(v[2])]
    calibration = {v[1]: v[5] for v in values if len(v) > 5 and v[5]}
    if not vals:
        return None, None, ""

    def own(ci: Any) -> tuple[float, float] | None:
        ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(np.isfinite(ci)) and ci[1] > ci[0]
        return (float(ci[0]), float(ci[1])) if ok else None

    by_split: dict[str, list[float]] = {}
    for s, _, v, _, _ in vals:
        by_split.setdefault(s, []).append(v)
    one = "95% interval over the test images (rates: exact Clopper-Pearson; AUROC and FPR@95 at their edges; others: bootstrap)"
    if len(vals) == 1:
        return vals[0][2], own(vals[0][3]), one
    if len(by_split) > 1 and stats.invariant_over_splits(metric, [(s, seed, v) for s, seed, v, _, _ in vals]):
        per_seed: dict[int, tuple[float, Any, int | None]] = {}
        for _s, seed, v, ci, n in vals:
            per_seed.setdefault(seed, (v, ci, n))
        return _invariant(per_seed, calibration, own)
    if len(by_split) == 1:
        v = next(iter(by_split.values()))
        if max(v) > min(v):
            return float(np.mean(v)), (min(v), max(v)), "lowest to highest over seeds (not a confidence interval)"
        return v[0], own(vals[0][3]), "the same for every seed: one run's 95% interval over its test images"
    if hidden and set(by_split) == set(hidden):
        d = stats.complete_design_interval([(s, seed, v) for s, seed, v, _, _ in vals], hidden, bounds=(0.0, 1.0))
        if d.ci95 is not None and d.ci95[1] > d.ci95[0]:
            return d.mean, d.ci95, ("95% interval for the mean over every split of the complete design (training "
                                    "noise: what the hidden classes' effects leave), within [0, 1]")
    runs = [stats.RunComparison(s, seed, v, own(ci), None, None) for s, seed, v, ci, _ in vals]
    mean, ci = stats.split_level_interval(by_split, bounds=(0.0, 1.0), image_floor=stats.image_noise_floor(runs))
    floor = ("variance at least the seeds' own" if any(len(v) > 1 for v in by_split.values())
             else "one seed per split: no seed floor")
    return mean, ci, f"95% t interval over split means ({floor}), within [0, 1]"


def _invariant(per_seed: dict[int, tuple[float, Any, int | None]], calibration: dict[int, int], own: Any
               ) -> tuple[float, tuple[float, float] | None, str]:
    """A value the same in every split of a seed: one seed, its run's interval; several, over fits (with the
    calibration sizes), else their pooled count's exact interval, else their range."""
    from osd.proportion import clopper_pearson

    if len(per_seed) == 1:
        v, ci, _ = next(iter(per_seed.values()))
        return v, own(ci), "the same in every split: its 95% interval over its own test images"
    counts = [(round(v * n), int(n)) for v, _, n in per_seed.values() if n]
    if len(counts) == len(per_seed) and set(calibration) >= set(per_seed):
        return _over_fits(per_seed, calibration)
    if len(counts) == len(per_seed):
        k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return k / n, clopper_pearson(k, n), (
            f"the same in every split of a seed, {len(per_seed)} seeds (each its own fit and test images): "
            "exact interval of their pooled count, for the mean of these fits' rates")
    v = [x[0] for x in per_seed.values()]
    rng = (min(v), max(v))
    return float(np.mean(v)), rng if rng[1] > rng[0] else own(next(iter(per_seed.values()))[1]), (
        f"the same in every split of a seed: lowest to highest over {len(per_seed)} seeds (not a confidence "
        "interval)")


def _over_fits(per_seed: dict[int, tuple[float, Any, int]], calibration: dict[int, int]
               ) -> tuple[float, tuple[float, float], str]:
    """A stage-1 pass rate over seeds, each its own fit on ``calibration[seed]`` normals: the procedure's pass
    rate (over fits), not only these fits'. Under exchangeability a seed's count is beta-binomial (its
    threshold's pass rate ~ Beta(k, n_cal - k + 1): :mod:`osd.calibration_check`), its variance the binomial's
    times 1 + (n - 1) / (n_cal + 2); the variance used is the larger of that and the seeds' observed one, as
    Clopper-Pearson at the effective sample size (Korn-Graubard, :mod:`osd.ranking_intervals`)."""
    from osd.ranking_intervals import effective_clopper_pearson

    rates = np.array([v for v, _, _ in per_seed.values()])
    n = np.array([n for _, _, n in per_seed.values()], dtype=float)
    n_cal = np.array([calibration[s] for s in per_seed], dtype=float)
    p = float(np.sum(rates * n) / n.sum())
    model = p * (1 - p) * float(np.sum(n * (1 + (n - 1) / (n_cal + 2)))) / n.sum() ** 2
    observed = float(rates.var(ddof=1) / rates.size)
    ci = effective_clopper_pearson(p, int(n.sum()), max(model, observed))
    return p, (ci[0], ci[1]), (f"the same in every split of a seed, {len(per_seed)} seeds (each its own stage-1 fit "
                               "and test images): 95% interval for the procedure's pass rate over fits (each seed's "
                               "count beta-binomial from its calibration size, or the seeds' own spread if larger)")


def cell(mean: float | None, ci: tuple[float, float] | None) -> str:
    """``0.976 [0.961, 0.989]``, or the mean alone, or ``-``."""
    if mean is None:
        return "-"
    return fmt(mean) + (f" {fmt_ci(ci)}" if ci else "")


def threshold_words(fit: Any) -> str | None:
    """What stage 1's threshold accepts, in words, from the stored fit (None without one)."""
    from osd.osr.thresholds import acceptance_words

    if fit is None or not fit.threshold_summary:
        return None
    return f" (its threshold is {acceptance_words(fit.threshold_summary, fit.stats.get('unit', 'crop'))})"


def three_outcome_mix(runs: list[Any]) -> dict[str, int] | None:
    """The first run's three-outcome test mix (known, unknown, normal images): what the answer states."""
    block = next((r.outcomes for r in runs if r.outcomes is not None), None)
    return dict(block.counts) if block is not None else None

"""``run-all``: the whole study. PatchCore once; per split train, embed, calibrate, osr, cascade, bench;
then the report. Every step is cached and written atomically, so an interrupted run resumes
after its last finished step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from osd import artifacts
from osd.config import Config
from osd.errors import ConfigError
from osd.pipeline.grid import JobRun, StepRun
from osd.progress import Reporter, ensure
from osd.records import Record
from osd.report.result import Report
from osd.types import JsonObject

# 5: read from the steps' records, not metrics.json
# 4: the answer as the data allow (split-level interval, Holm), summary.md/.tex, operating points; 3: three-outcome
# table and verdict; 2: keyed on the steps' outputs by content; epoch-selection and variant notes
REPORT_ALGORITHM = "report/5"


def _report_inputs(cfg: Config, splits: list[str], seeds: list[int]) -> list[Any]:
    """The identities of what the report reads: each step record's and the PatchCore fit's artifact
    id (a step that recomputed has a new one)."""
    out: list[Any] = []
    for seed in seeds:
        layout = artifacts.Layout(cfg.for_seed(seed).output_dir)
        records = [p for s in splits for p in (layout.osr_evaluation(s), layout.cascade_evaluation(s),
                                                layout.outcomes_evaluation(s), layout.bench_record(s))]
        for path in [*records, layout.detection_evaluation, layout.detector]:
            out.append([str(path), (artifacts.peek(path) or {}).get("id")])
    return out


def _holm_note(replicates: int, runs: int) -> list[str]:
    """A line when the per-run tests cannot reject after Holm's correction at this B, whatever the data."""
    from osd.verdict import holm_can_reject, replicates_needed

    if not replicates or holm_can_reject(replicates, runs):
        return []
    return [f"stats.bootstrap = {replicates} with {runs} runs: the smallest p-value a run can reach, 2/(B+1) = "
            f"{2 / (replicates + 1):.4f}, is above Holm's first threshold 0.05/{runs}, so no run can be significant "
            f"whatever the data; set stats.bootstrap >= {replicates_needed(runs)} for per-run tests"]


@dataclass(frozen=True)
class StudyRun(Record):
    """What ``run-all`` did: each step of each job (cached or computed, its time), the report, the jobs
    that failed (one line each), and what the study says about itself (``notes``: warnings for the
    user; ``info``: what it did)."""

    steps: list[StepRun]
    seconds: float
    report: Report
    two_stage: bool
    seeds: list[int]
    jobs: int = 1
    scheduler: str | None = None
    failed: list[JobRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return {"steps": [s.to_dict() for s in self.steps], "seconds": self.seconds, "report": self.report.to_dict(),
                "two_stage": self.two_stage, "notes": self.notes, "info": self.info, "seeds": self.seeds,
                "jobs": self.jobs, "scheduler": self.scheduler,
                "failed": [{"job": r.job, "split": r.split, "seed": r.seed, "error": r.error} for r in self.failed]}


def _design_info(cfg: Config, splits: list[str], seeds: list[int]) -> list[str]:
    """The complete design, checked before anything runs: every class has the training images it needs
    (else one ConfigError), and how many trainings the study holds."""
    from collections import Counter

    from osd.config.design import check_training_images, design_classes
    from osd.pipeline.job import Job

    index, _ = Job.of(cfg).neu
    counts = Counter(index.labels)
    check_training_images({c: counts.get(c, 0) for c in design_classes(cfg.splits.named)}, cfg.splits.train_fraction)
    regimen = ("full fine-tuning" if cfg.classifier.train_blocks < 0 else
               f"the last {cfg.classifier.train_blocks} block(s) trained on the shared frozen prefix")
    return [f"the complete design: {len(splits)} split(s) x {len(seeds)} seed(s) = {len(splits) * len(seeds)} "
            f"classifier trainings ({regimen})"]


def run_all(cfg: Config, splits: list[str] | None = None, force: bool = False,
            reporter: Reporter | None = None, seeds: list[int] | None = None, jobs: int = 1,
            scheduler: Any = None) -> StudyRun:
    """The study once per seed: each seed's PatchCore fit, then every (split, seed) job, then one
    report over all runs. ``jobs`` / ``scheduler``: see :func:`osd.pipeline.grid.run_grid`."""
    from osd.pipeline.grid import run_grid
    from osd.report.build import build_report

    reporter = ensure(reporter)
    try:
        splits = [cfg.split_name(s) for s in splits] if splits else cfg.split_names
    except ConfigError as exc:
        raise ConfigError(f"--splits: {exc}") from None
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be at least 1")
    seeds = cfg.study_seeds(seeds)
    two_stage = bool(cfg.normal.severstal_root or cfg.normal.folder)
    if cfg.project.study == "detection":
        if not two_stage:
            raise ConfigError("project.study = detection needs normal images: set normal.folder or "
                              "normal.severstal_root")
        splits = []
    info = _design_info(cfg, splits, seeds) if splits and cfg.splits.design == "complete" else []
    for line in info:  # said before minutes of training start
        reporter.note(line)
    start = time.perf_counter()
    records = run_grid(cfg, splits, seeds, two_stage, jobs, scheduler, force, reporter)
    steps = [step for r in records for step in r.steps]
    failed = [r for r in records if r.error]
    t = time.perf_counter()
    layout = artifacts.Layout(cfg.output_dir)
    # the report is a function of the steps' records and the PatchCore fit (by artifact id), the
    # config and the report code's version: a step that recomputed or a newer report builder rebuilds it
    key = artifacts.cache_key("report", REPORT_ALGORITHM, splits, seeds, cfg.to_dict(), _report_inputs(cfg, splits, seeds))
    previous = artifacts.read_json(layout.report_record)
    # Nothing upstream changed and the report exists: keep it (``osd report`` rebuilds it on demand).
    reuse = (not force and not failed and all(s.cached for s in steps) and previous.get("cache_key") == key
             and layout.report_html.is_file())
    report = Report.from_payload(previous["report"]) if reuse else build_report(cfg, splits, seeds)
    if not reuse:
        artifacts.write_json(layout.report_record, {"cache_key": key, "report": report.payload()})
    steps.append(StepRun("-", "-", "report", time.perf_counter() - t, reuse))
    notes = [] if two_stage else [
        "no normal images configured (normal.severstal_root or normal.folder): only the one-stage study ran; "
        "the two-stage cascade needs defect-free images (set normal.folder to a folder of them)"]
    # info: what the study did, said as a note (a warning is for what needs the user's attention)
    if cfg.project.study == "detection":
        notes = []
        info = ["detection study (project.study = detection): stage 1 alone on good and bad parts; skipped: "
                "training, embeddings, tau and kappa, the one-stage study and the cascade (they need at least "
                "3 defect classes: 2 known to name, 1 unknown to flag)"]
    notes += _holm_note(cfg.stats.bootstrap, len(splits) * len(seeds)) if two_stage and splits else []
    return StudyRun(steps, time.perf_counter() - start, report, two_stage, seeds, jobs,
                    str(scheduler) if scheduler else None, failed, notes, info)

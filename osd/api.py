"""osd's Python API: one :class:`Project`, what the command line and a notebook both call.

    import osd

    p = osd.Project.init("demo", demo=True)          # or osd.Project("path/to/project")
    result = p.run_all(seeds=[0, 1])                  # the whole study, cached
    p.summary()                                       # the summary rows, numbers as numbers
    p.predict(["a.jpg", "b.jpg"], split="a")          # the study's decisions on new images

A project is its ``osd.toml`` loaded once, with the settings given (``--set`` on the command line);
every method is one step of the study and returns that step's record. Like sqlite-utils' ``Database``
under its CLI (or anomalib's ``Engine``), the command line only parses options, calls one method
and renders what it returns. Nothing here prints: pass a reporter (``osd.LineReporter(print)`` in a
notebook) to see progress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osd import config
from osd.api_args import checked, settings_arg
from osd.errors import ConfigError
from osd.progress import Reporter, ensure
from osd.types import JsonObject, Settings

if TYPE_CHECKING:
    from osd.pipeline.monitor import MonitorResult
    from osd.report.result import Report
    from osd.study import StudyRun


def check_acceptance(acceptance: float | None) -> None:
    """One bound and one line for every out-of-range operating point (the settings' own: gt 0, lt 1)."""
    if acceptance is not None and not 0.0 < acceptance < 1.0:
        raise ConfigError(f"--acceptance {acceptance:g}: must be above 0 and below 1 (e.g. 0.99 for a 1% "
                          "false-alarm target)")


class Project:
    """An osd project folder (its ``osd.toml``) with ``settings`` applied over the file.

    ``settings``: dotted keys (``{"classifier.epochs": 6}``) or ``KEY=VALUE`` strings, validated as
    the file is; ``reporter``: progress (default: silent).
    """

    def __init__(self, path: str | Path = ".", settings: Settings | Sequence[str] | None = None,
                 reporter: Reporter | None = None):
        self.path = Path(path)
        self.settings = settings = settings_arg(settings)
        self.reporter = ensure(reporter)
        self.config = config.load(self.path, settings)
        self._job = None

    @property
    def job(self):
        """The project resolved once (:class:`osd.pipeline.job.Job`: layout, resources, data index, manifests)
        for every step this object runs; made anew only when an operating point changes the settings."""
        if self._job is None:
            from osd.pipeline.job import Job

            self._job = Job.of(self.config)
        return self._job

    def __repr__(self) -> str:
        return f"Project({str(self.config.base_dir)!r}, study={self.config.project.study!r})"

    @classmethod
    def init(cls, path: str | Path, *, neu: str | Path | None = None, severstal: str | Path | None = None,
             normal: str | Path | None = None, demo: bool = False, force: bool = False, unknown_per_split: int = 2,
             in_domain: bool | None = None, detect_only: bool = False, design: str = "listed",
             reporter: Reporter | None = None) -> Project:
        """``osd init``: write the project file (and the demo data with ``demo``); the project it made.
        ``design="complete"``: every way of hiding ``unknown_per_split`` classes, one split each."""
        from osd.project import init_project

        def p(x: str | Path | None) -> Path | None:
            return None if x is None else Path(x)

        made = init_project(Path(path), neu=p(neu), severstal=p(severstal), normal=p(normal), demo=demo, force=force,
                            unknown_per_split=unknown_per_split, in_domain=in_domain, detect_only=detect_only,
                            design=design)
        project = cls(path, reporter=reporter)
        project.created = made
        return project

    # ------------------------------------------------------------ the steps, one record each

    def check(self):
        """``osd data check``: counts, sizes, duplicates, unreadable files (collected, not raised)."""
        from osd.pipeline.check import check_data

        return check_data(self.job)

    @checked
    def train(self, split: str = "a", force: bool = False):
        from osd.pipeline.train import train

        return train(self.job, split, force=force, reporter=self.reporter)

    @checked
    def embed(self, split: str = "a", force: bool = False):
        from osd.pipeline.train import embed

        return embed(self.job, split, force=force, reporter=self.reporter)

    @checked
    def validate(self, split: str = "a", force: bool = False):
        """The split's validation signals under its regimen: closed-set accuracy on the threshold images and
        the leave-one-known-class-out AUROC of the one-stage score (one training per known class)."""
        from osd.pipeline.validation import validate

        return validate(self.job, split, force=force, reporter=self.reporter)

    @checked
    def calibrate(self, split: str = "a", force: bool = False, acceptance: float | None = None):
        """tau and kappa on known validation images; ``acceptance`` makes another operating point the
        project's own (written to osd.toml, thresholded anew without retraining)."""
        from osd.pipeline.osr import calibrate

        if acceptance is not None and self.config.project.study == "detection":
            raise ConfigError("--acceptance: a detection study has no tau or kappa; its threshold is PatchCore's: "
                              "osd patchcore fit --acceptance")
        self._choose("osr.acceptance", acceptance)
        return calibrate(self.job, split, force=force, reporter=self.reporter)

    @checked
    def osr(self, split: str = "a", force: bool = False):
        from osd.pipeline.osr import evaluate

        return evaluate(self.job, split, force=force, reporter=self.reporter)

    @checked
    def patchcore_fit(self, force: bool = False, acceptance: float | None = None):
        """Stage 1 on the normal images; ``acceptance`` as in :meth:`calibrate` (no refit)."""
        from osd.pipeline.detector import stage1_fit

        self._choose("patchcore.acceptance", acceptance)
        return stage1_fit(self.job, force=force, reporter=self.reporter)

    @checked
    def cascade(self, split: str = "a", force: bool = False):
        from osd.pipeline.cascade import run_cascade

        return run_cascade(self.job, split, force=force, reporter=self.reporter)

    @checked
    def outcomes(self, split: str = "a", force: bool = False):
        from osd.pipeline.outcomes import three_outcomes

        return three_outcomes(self.job, split, force=force, reporter=self.reporter)

    @checked
    def bench(self, split: str = "a"):
        from osd.pipeline.bench import bench

        return bench(self.job, split, reporter=self.reporter)

    @checked
    def report(self, splits: list[str] | None = None, seeds: list[int] | None = None) -> Report:
        """Rebuild the summary tables, figures and report.html from what is on disk (recomputes no step)."""
        from osd.report.build import build_report

        return build_report(self.config, splits, seeds)

    @checked
    def run_all(self, splits: list[str] | None = None, seeds: list[int] | None = None, force: bool = False,
                jobs: int = 1, scheduler: Any = None) -> StudyRun:
        """The whole study (every step cached), then the report."""
        from osd.study import run_all

        return run_all(self.config, splits, force=force, reporter=self.reporter, seeds=seeds, jobs=jobs,
                       scheduler=scheduler)

    @checked
    def predict(self, inputs: Iterable[Any], split: str = "a", approach: str = "both", engine: str = "torch",
                export_dir: str | Path | None = None, batch_size: int = 16) -> list[JsonObject]:
        """The study's decisions on new images (paths, PIL images or arrays), one row each; never trains.
        One path (a string or Path: a file, a folder, a list) is taken as one input, never as its letters."""
        from osd.pipeline.predict import expand_inputs

        if isinstance(inputs, (str, Path)):
            inputs = list(expand_inputs([inputs]))
        return list(self.predictor(split, approach, engine, export_dir).predict(inputs, batch_size))

    @checked
    def predictor(self, split: str = "a", approach: str = "both", engine: str = "torch",
                  export_dir: str | Path | None = None):
        """The split's cached models, loaded once and checked to belong together, for rows streamed image
        by image (``.predict(inputs)`` yields them; what ``osd predict`` writes to its CSV)."""
        from osd.pipeline.predict import Predictor

        return Predictor(self.job, split, approach, engine=engine,
                         export_dir=None if export_dir is None else Path(export_dir))

    @checked
    def export(self, split: str = "a", approach: str = "both", out: str | Path | None = None, force: bool = False):
        """ONNX graphs and a model card, checked against torch."""
        from osd.pipeline.export import export

        return export(self.job, split, approach, None if out is None else Path(out), force=force,
                      reporter=self.reporter)

    @checked
    def monitor(self, rows: Sequence[str | Path], split: str = "a", window: int | None = None,
                plot: str | Path | None = None, false_alarm_every: float = 10000):
        """Batches of ``osd predict`` rows: against the line's own baseline where one was made (control charts
        at one false alarm per ``false_alarm_every`` images), else against the reference this project's study
        stored, batch by batch; ``plot``: a PNG of the checks (with a baseline, the control chart and an HTML
        page beside it)."""
        from osd.pipeline.monitor import monitor

        rows = [rows] if isinstance(rows, (str, Path)) else rows  # one file, never its letters
        result = monitor(self.job, [Path(r) for r in rows], split, window=window, false_alarm_every=false_alarm_every)
        return _plotted(result, plot)

    @checked
    def monitor_baseline(self, rows: Sequence[str | Path], split: str = "a", window: int = 25,
                         variant_column: str | None = None):
        """Phase I: the line's own baseline from rows declared in control, stored beside the split (per part
        variant with ``variant_column``: a column of the rows, or ``"folder"``)."""
        from osd.pipeline.monitor import make_line_baseline

        rows = [rows] if isinstance(rows, (str, Path)) else rows
        return make_line_baseline(self.job, [Path(r) for r in rows], split, window=window,
                                  variant_column=variant_column)

    @checked
    def unknowns(self, rows: Sequence[str | Path], split: str = "a", max_groups: int = 8):
        """The images called unknown in these predict rows, grouped by embedding similarity, each group
        with a contact sheet: a new defect type to name and add as a known class."""
        from osd.pipeline.monitor import read_rows
        from osd.pipeline.unknowns import group_unknowns

        every = [r for f in rows for r in read_rows(Path(f))]
        return group_unknowns(self.job, split, every, max_groups)

    # ------------------------------------------------------------ reading results

    def summary(self) -> list[JsonObject]:
        """The summary rows of the results on disk (per run, per split and overall), numbers as numbers."""
        return list(self.report().rows)

    def summary_frame(self):
        """The summary rows as a pandas DataFrame (pandas is not a dependency of osd: install it to use this)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("summary_frame() needs pandas (pip install pandas); summary() gives the same rows "
                              "as dicts") from None
        return pd.DataFrame(self.summary())

    def answer(self) -> list[str]:
        """The report's two or three sentences: what the data allow to say."""
        return list(self.report().answer)

    @property
    def outputs(self) -> Path:
        return self.config.output_dir

    def _choose(self, key: str, acceptance: float | None) -> None:
        """An operating point chosen here is the project's from now on: checked, written to osd.toml and
        applied to this project's settings."""
        if acceptance is None:
            return
        check_acceptance(acceptance)
        written = config.write_setting(self.path, key, acceptance)
        self.reporter.note(f"{key} = {acceptance:g} written to {written}")
        self.config = config.load(self.path, list(self.settings) if isinstance(self.settings, (list, tuple))
                                  else self.settings)
        self._job = None


def monitor_bundle(rows: Sequence[str | Path], export_dir: str | Path, window: int | None = None,
                   plot: str | Path | None = None, false_alarm_every: float = 10000):
    """``osd monitor --export-dir``: the export bundle alone (an inspection PC without the study's outputs)."""
    from osd.pipeline.monitor import monitor

    rows = [rows] if isinstance(rows, (str, Path)) else rows
    return _plotted(monitor(None, [Path(r) for r in rows], export_dir=Path(export_dir), window=window,
                            false_alarm_every=false_alarm_every), plot)


def monitor_bundle_baseline(rows: Sequence[str | Path], export_dir: str | Path, window: int = 25,
                            variant_column: str | None = None):
    """``osd monitor --export-dir --make-baseline``: the line's baseline, kept beside the bundle."""
    from osd.pipeline.monitor import make_line_baseline

    rows = [rows] if isinstance(rows, (str, Path)) else rows
    return make_line_baseline(None, [Path(r) for r in rows], export_dir=Path(export_dir), window=window,
                              variant_column=variant_column)


def _plotted(result: MonitorResult, plot: str | Path | None) -> MonitorResult:
    if plot is not None and result.charts:
        from osd.report.plots import control_chart, control_chart_page

        png = control_chart(result.charts, Path(plot))
        return dataclasses.replace(result, plot=str(png), page=str(control_chart_page(result, png)))
    if plot is not None and any(c.p_value is not None for c in result.checks):
        from osd.report.plots import monitor_chart

        return dataclasses.replace(result, plot=str(monitor_chart(result.checks, list(result.statuses), Path(plot))))
    if plot is not None:
        return dataclasses.replace(result, notes=[*result.notes, f"--plot {plot}: not written, no check was tested"])
    return result

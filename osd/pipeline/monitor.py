"""``osd monitor``: batches of ``osd predict`` rows against the reference the study stored (the
statistics: :mod:`osd.monitor`). The reference comes from the project's cached artifacts or from an
export bundle (``monitor_reference.npz``, sealed by the bundle's digests like its graphs), so that
an inspection PC with the bundle alone can run it."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osd import artifacts
from osd.control_chart import FALSE_ALARM_EVERY, ChartPoint, chart, rate_words, window_statistics, windows
from osd.errors import ArtifactError, DataError
from osd.monitor import DRIFT, OK, RULE, Check, Reference, batch_status, batches, check_batch
from osd.pipeline.baseline import FOLDER, Baseline, make_baseline, read_baseline, variant_of, write_baseline
from osd.pipeline.job import Job
from osd.types import JsonObject


def project_reference(job: Job, split: str) -> Reference:
    """The reference of a split (or of the detection study) from the project's cached artifacts; computes nothing."""
    from osd.osr.embeddings import Embeddings
    from osd.osr.model import part_matrix
    from osd.pipeline.detector import stored_stage1_fit
    from osd.records import OsrResult, stored

    cfg = job.cfg
    layout = job.layout
    fit = stored_stage1_fit(layout)
    stage1: dict[str, np.ndarray | float] = {}
    if fit is not None and fit.stats.get("unit") == "image":  # predict scores an image: a per-crop reference is not comparable
        stage1 = {"stage1_normal": np.asarray(fit.test_scores, float), "stage1_threshold": float(fit.threshold)}
    if cfg.project.study == "detection":
        if not stage1:
            raise ArtifactError(f"{layout.detector}: no PatchCore fit to monitor against", rebuild="run-all")
        return Reference(**stage1)
    s = cfg.split_name(split)
    cal = artifacts.require(layout.calibration(s), f"calibrate --split {s}", f"calibration of split {s}")
    emb = Embeddings.from_payload(artifacts.require(layout.embeddings_file(s), f"embed --split {s}",
                                                    f"embeddings of split {s}").payload)
    val = emb.threshold
    dist = cal.payload["scorer"].score_samples(part_matrix(val, list(cal.payload["blocks"])))
    osr = stored(OsrResult, layout.osr_evaluation(s))
    mix: dict[str, float] = {}
    accepted: list[str] = []
    if osr is not None:
        accepted = [r["pred_label"] for r in osr.rows.dicts() if r["pred_label"] != "unknown"]
        mix = {c: accepted.count(c) / len(accepted) for c in sorted(set(accepted))} if accepted else {}
    tau = cal.payload["tau"]
    return Reference(**stage1, distance_val=np.asarray(dist, float), tau=float(tau.threshold_),
                     acceptance=float(tau.acceptance), acceptance_low=float(tau.acceptance_ci_[0]), class_mix=mix,
                     class_n=len(accepted) or None)


def write_reference(ref: Reference, path: Path) -> Path:
    """The reference as plain arrays (no pickle), written atomically."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **ref.arrays())

    return artifacts.atomic_write(path, write)


def _split_of(folder: Path) -> str:
    """`` --split X`` for a rebuild hint where the bundle's card still says its split (else nothing)."""
    from osd.pipeline.onnx_engine import card_split

    split = card_split(folder)
    return f" --split {split}" if split not in (None, "-") else ""


def bundle_reference(folder: Path) -> Reference:
    """The reference an export bundle carries, checked against the bundle's digests first."""
    from osd.pipeline.onnx_engine import verify

    rebuild = f"export{_split_of(Path(folder))} --out {folder}"
    verify(Path(folder), rebuild)
    path = artifacts.Layout.export_reference(Path(folder))
    if not path.is_file():
        raise ArtifactError(f"{folder}: the export has no monitor reference (made before osd monitor existed)",
                            rebuild=rebuild)
    try:
        with np.load(path, allow_pickle=False) as a:
            return Reference.from_arrays({k: a[k] for k in a.files})
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable ({type(exc).__name__})", rebuild=rebuild) from None


def read_rows(path: Path) -> list[JsonObject]:
    """The rows of one CSV file ``osd predict --out`` wrote."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder; give the CSV files osd predict --out wrote")
    if not path.is_file():
        raise DataError(f"{path}: no such file (give the CSV files osd predict --out wrote)")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a CSV file osd predict wrote ({type(exc).__name__})") from None
    if rows and "status" not in rows[0]:
        raise DataError(f"{path}: no 'status' column: not a file osd predict wrote")
    return rows


NUMBERS = ("one_stage_score", "tau", "msp", "kappa", "stage1_score", "stage1_threshold")


def required_columns(ref: Reference) -> tuple[str, ...]:
    """The columns rows need for the checks this reference makes."""
    need = ["status"]
    if ref.distance_val is not None:
        need += ["one_stage", "one_stage_score", "tau", "closed_class"]
    if ref.stage1_normal is not None:
        need += ["stage1_score", "stage1_threshold"]
    return tuple(need)


def validate_rows(path: Path, rows: list[JsonObject], ref: Reference) -> list[JsonObject]:
    """One check of a rows file at load, before any statistic: rows there are, the columns this reference's
    checks read, every number of a readable image a finite number (a file edited by hand or by a tool
    that wrote ``nan``, ``abc`` or an empty score is refused with its row and column), and the thresholds
    the rows were decided by are this reference's (:func:`belongs`). Returns the rows, numbers as floats."""
    if not rows:
        raise DataError(f"{path}: no rows (empty, or a header alone): nothing to monitor")
    missing = [c for c in required_columns(ref) if c not in rows[0]]
    if missing:
        study = ("; rows of a detection project (no_defect / defect) carry no one-stage columns"
                 if "decision" in rows[0] and "one_stage_score" in missing else "")
        raise DataError(f"{path}: no column {', '.join(missing)}: not rows osd predict wrote for this "
                        f"{'split' if ref.distance_val is not None else 'project'}{study}")
    out = []
    for i, row in enumerate(rows):
        if row.get("status", "ok") != "ok":
            out.append(row)
            continue
        row = dict(row)
        for column in (c for c in NUMBERS if c in row and (c in required_columns(ref) or row[c] not in (None, ""))):
            value = row[column]
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if not np.isfinite(number):
                raise DataError(f"{path}, row {i + 2}: {column} = {value!r} is not a finite number (osd predict "
                                "writes a number for every readable image: the file was changed after it)")
            row[column] = number
        out.append(row)
    belongs(path, out, ref)
    return out


def belongs(path: Path, rows: list[JsonObject], ref: Reference) -> None:
    """Refuse rows that another split or export made: each row carries the threshold it was decided by
    (tau, the stage-1 threshold), which must be the reference's."""
    for column, expected in (("tau", ref.tau), ("stage1_threshold", ref.stage1_threshold)):
        if expected is None:
            continue
        seen = {float(r[column]) for r in rows if r.get(column) not in (None, "")}
        # older CSVs held six significant digits: a relative 1e-5 is the same threshold
        other = sorted(v for v in seen if abs(v - expected) > 1e-5 * max(1.0, abs(expected)))
        if other:
            raise DataError(f"{path}: its rows were decided with {column} = {other[0]:.6g}, the reference's is "
                            f"{expected:.6g}: rows from another split or export (predict with the split or bundle "
                            "this reference belongs to)")


@dataclass(frozen=True)
class MonitorResult:
    """Every check of every batch, each batch's status, the rule, and where the plot went. With a baseline
    from the line, the statuses come from its control charts (``charts``) at the stated rate."""

    source: str
    checks: list[Check]
    statuses: dict[str, str]
    rule: str = RULE
    plot: str | None = None
    notes: list[str] = field(default_factory=list)
    charts: list[ChartPoint] = field(default_factory=list)
    baseline: str | None = None  # the baseline file the charts' limits came from
    page: str | None = None  # the control chart's HTML page

    @property
    def worst(self) -> str:
        s = set(self.statuses.values())
        return "drift" if "drift" in s else "watch" if "watch" in s else "ok" if "ok" in s else "not tested"

    def to_dict(self) -> JsonObject:
        return {"source": self.source, "rule": self.rule, "status": self.worst, "batches": self.statuses,
                "checks": [c.to_dict() for c in self.checks], "charts": [p.to_dict() for p in self.charts],
                "baseline": self.baseline, "plot": self.plot, "page": self.page, "notes": self.notes}


@dataclass(frozen=True)
class BaselineResult:
    """What ``osd monitor --make-baseline`` stored."""

    path: str
    source: str
    baseline: Baseline

    def to_dict(self) -> JsonObject:
        return {"path": self.path, "source": self.source, **self.baseline.content()}


def _reference(job: Job | None, split: str, export_dir: Path | None) -> tuple[Reference, str, Path]:
    """The reference (the export bundle's, else the project's), its name, and where its baseline lives."""
    cfg = None if job is None else job.cfg
    if export_dir is not None:
        folder = Path(export_dir)
        return bundle_reference(folder), f"export bundle {export_dir}", artifacts.Layout.export_baseline(folder)
    if cfg is None:
        raise DataError("osd monitor: give a project (-p) or an export bundle (--export-dir)")
    detection = cfg.project.study == "detection"
    name = "-" if detection else cfg.split_name(split)
    source = f"project {cfg.base_dir}, " + ("detection study" if detection else f"split {name}")
    return project_reference(job, split), source, job.layout.monitor_baseline(name)


def _validated(rows_files: list[Path], ref: Reference) -> list[tuple[str, list[JsonObject]]]:
    return [(f"{i + 1}: {Path(f).name}", validate_rows(Path(f), read_rows(Path(f)), ref))
            for i, f in enumerate(rows_files)]


def make_line_baseline(job: Job | None, rows_files: list[Path], split: str = "a", export_dir: Path | None = None,
                       window: int = 25, variant_column: str | None = None) -> BaselineResult:
    """Phase I: the line's own limits from rows declared in control, stored beside the split or the bundle."""
    ref, source, path = _reference(job, split, export_dir)
    files = _validated(rows_files, ref)
    rows = [r for _, rs in files for r in rs]
    if variant_column and variant_column != FOLDER and variant_column not in rows[0]:
        raise DataError(f"--variant-column {variant_column}: no such column in {rows_files[0]} (its columns: "
                        f"{', '.join(rows[0])}; or 'folder': the image's parent folder)")
    b = make_baseline(rows, ref, window, variant_column, [str(f) for f in rows_files])
    return BaselineResult(str(write_baseline(b, path)), source, b)


def monitor(job: Job | None, rows_files: list[Path], split: str = "a", export_dir: Path | None = None,
            window: int | None = None, false_alarm_every: float = FALSE_ALARM_EVERY) -> MonitorResult:
    """Check each batch of predict rows: against the line's own baseline where one was made (control charts
    at one false alarm per ``false_alarm_every`` images), else against the study's reference batch by batch."""
    if window is not None and window < 5:
        raise DataError(f"--window {window}: at least 5 images a batch")
    if false_alarm_every < 100:
        raise DataError(f"--false-alarm-every {false_alarm_every:g}: at least 100 images per false alarm")
    ref, source, bpath = _reference(job, split, export_dir)
    notes = []
    if ref.stage1_normal is None:
        notes.append("stage 1 not checked: its reference is per crop (normal images from another source), a predicted "
                     "image is scored whole")
    files = _validated(rows_files, ref)
    baseline = read_baseline(bpath, ref)
    if baseline is not None:
        return _charted(source, files, ref, baseline, bpath, window, false_alarm_every, notes)
    checks: list[Check] = []
    statuses: dict[str, str] = {}
    for name, rows in batches(files, window):
        found = check_batch(name, rows, ref)
        checks += found
        statuses[name] = batch_status(found)
        if statuses[name] == "not tested":
            notes.append(f"batch {name}: not tested: {untested_reason(rows)}")
    tested = sum(v != "not tested" for v in statuses.values())
    if tested:
        notes.append(f"no baseline from the line: every check compares with the study's reference, batch by batch "
                     f"(1% false drift per batch), so over these {tested} batch(es) a line that has not changed "
                     f"reads drift somewhere with a chance of up to {1 - 0.99 ** tested:.0%}; a line's normal "
                     "variation (part variants, runs) reads as drift too. Make the line's own baseline from "
                     "in-control rows: osd monitor ROWS --make-baseline")
    return MonitorResult(source, checks, statuses, notes=notes)


def _charted(source: str, files: list[tuple[str, list[JsonObject]]], ref: Reference, baseline: Baseline,
             path: Path, window: int | None, false_alarm_every: float, notes: list[str]) -> MonitorResult:
    """Phase II: each variant's rows in windows of the baseline's size, on its control charts."""
    if window is not None and window != baseline.window:
        raise DataError(f"--window {window}: the baseline ({path}) was made with windows of {baseline.window} "
                        f"images; its limits hold for that size only (monitor with --window {baseline.window}, or "
                        "make a baseline anew)")
    rows = [(i + 1, r) for i, r in enumerate(r for _, rs in files for r in rs)]
    streams: dict[str, list[tuple[int, JsonObject]]] = {}
    for i, r in rows:
        streams.setdefault(variant_of(r, baseline.variant_column), []).append((i, r))
    unseen = [v for v in streams if v not in baseline.limits]
    if unseen:
        raise DataError(f"rows of variant {unseen[0]!r} ({baseline.variant_column}), which the baseline ({path}) "
                        f"never saw (it knows {', '.join(repr(v) for v in baseline.limits)}): make a baseline that "
                        "holds it")
    charts_n = sum(len(v) for v in baseline.limits.values())
    points: list[ChartPoint] = []
    statuses: dict[str, str] = {}
    for variant, stream in streams.items():
        parts = windows(stream, baseline.window)  # the baseline's own rule: a last window of half or more
        left = len(stream) - sum(len(p) for p in parts)
        if left:
            notes.append(f"the last {left} row(s){f' of {variant}' if variant else ''}: fewer than half a window, "
                         "not charted")
        named = [(f"{variant + ': ' if variant else ''}rows {part[0][0]}-{part[-1][0]}",
                  window_statistics([r for _, r in part], ref.stage1_threshold)) for part in parts]
        # the rate is per image of the line: an image is charted in its own variant's charts only, so each
        # variant's charts share the whole rate among themselves
        got = chart(named, baseline.limits[variant], baseline.window, false_alarm_every, variant)
        points += got
        alarmed: dict[str, bool] = {}
        for p in got:
            alarmed[p.batch] = alarmed.get(p.batch, False) or bool(p.alarm)
        for label, _ in named:
            statuses[label] = "not tested" if label not in alarmed else DRIFT if alarmed[label] else OK
    return MonitorResult(source, [], statuses, rule=rate_words(false_alarm_every, baseline.window, charts_n),
                         notes=notes, charts=points, baseline=str(path))


def untested_reason(rows: list[JsonObject]) -> str:
    """Why a batch could not be tested, in words."""
    from osd.monitor import MIN_ROWS

    readable = [r for r in rows if r.get("status", "ok") == "ok"]
    if not readable:
        reasons = sorted({str(r.get("status")) for r in rows})
        return (f"none of its {len(rows)} images was readable (status {', '.join(reasons)}; first reason: "
                f"{rows[0].get('reason') or '-'}): a camera or transfer failure?")
    return (f"{len(readable)} readable image(s), fewer than the {MIN_ROWS} a check needs (or none that stage 1 "
            "flagged for the classifier's checks)")

"""The ``osd`` command. Heavy libraries are imported inside command bodies so ``osd --help`` is instant."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from osd import __version__
from osd.cli import options as o
from osd.cli import render
from osd.errors import ConfigError, OsdError, OsdWarning

app = typer.Typer(
    name="osd",
    help="Image-level open-set defect detection on steel: one-stage (Mahalanobis) vs two-stage (PatchCore cascade).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the project's data.", no_args_is_help=True)
patchcore_app = typer.Typer(help="Stage-1 anomaly detector (PatchCore) on normal images.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(patchcore_app, name="patchcore")


def _version(value: bool) -> None:
    if value:
        print(f"osd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version")
    ] = None,
) -> None:
    """Image-level open-set defect detection on steel surfaces."""


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn OsdError into one red line and exit 1 (a traceback only with --debug); show warnings in yellow."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))

        seen: set[str] = set()

        def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if debug:
                render.warning(str(message))
                return
            if issubclass(category, OsdWarning):  # each of osd's warnings once per command
                if str(message) not in seen:
                    seen.add(str(message))
                    render.warning(str(message))
                return
            # a library's warning (e.g. scikit-learn's about a version): its first line, once
            text = f"{category.__name__}: {(str(message).strip().splitlines() or [''])[0][:160]}"
            if text not in seen:
                seen.add(text)
                render.warning(text)

        with warnings.catch_warnings():
            warnings.simplefilter("always", OsdWarning)
            warnings.showwarning = show_warning
            try:
                return fn(*args, **kwargs)
            except OsdError as exc:
                if debug:
                    raise
                rebuild = getattr(exc, "rebuild", None)
                render.error(str(exc) + (f"; run `osd {rebuild}`" + ("" if rebuild.startswith("run-all") else
                                                                     " (or `osd run-all`)") if rebuild else ""))
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                if debug:
                    raise
                render.error("interrupted; finished steps are kept, run the command again to resume")
                raise typer.Exit(130) from None

    return wrapper


def _settings(overrides: list[str] | None, device: str | None = None) -> list[str]:
    return list(overrides or []) + ([f"project.device={device}"] if device else [])


def _project(project: Path | None, overrides: list[str] | None, device: str | None = None, json_out: bool = False):
    """The project as the Python API holds it (osd.Project): what every command calls one method of."""
    from osd.api import Project

    return Project(project or Path("."), _settings(overrides, device), _reporter(json_out))


def _check_acceptance(acceptance: float | None) -> None:
    """Checked before anything is read, so a bad value is the one line whatever the project holds."""
    from osd.api import check_acceptance

    check_acceptance(acceptance)


def _reporter(json_out: bool):
    return render.RichReporter(quiet=json_out)


# ---------------------------------------------------------------- init and data


@app.command("init")
@command
def init_cmd(
    path: Annotated[Path, typer.Argument(help="Project folder to create (holds osd.toml)")] = Path("."),
    neu: Annotated[Optional[Path], typer.Option("--neu", help="NEU data folder")] = None,
    severstal: Annotated[Optional[Path], typer.Option("--severstal", help="Severstal folder (train_images/, train.csv)")] = None,
    normal: Annotated[Optional[Path], typer.Option("--normal", help="Plain folder of defect-free images")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Also generate a small synthetic data set")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing osd.toml")] = False,
    unknown_per_split: Annotated[int, typer.Option(
        "--unknown-per-split", help="For classes other than NEU's: unknown classes per split (each class is "
        "unknown in exactly one split)")] = 2,
    in_domain: Annotated[Optional[bool], typer.Option(
        "--in-domain/--cross-domain", help="The normal images are of the same line as the defects (three-outcome "
        "study); default: in-domain for --normal beside your own classes, cross-domain otherwise. With --demo: "
        "also write the demo line's own defect-free images")] = None,
    detect_only: Annotated[bool, typer.Option(
        "--detect-only", help="Good parts and bad parts: stage 1 alone, no_defect / defect (chosen by itself for "
        "normal images with zero or one defect class)")] = False,
    debug: o.Debug = False,
) -> None:
    """Create a project folder with a commented osd.toml and a data README."""
    from osd.project import init_project

    with render.err.status("writing the project" + (" and synthetic demo data" if demo else "") + " ..."):
        result = init_project(path, neu, severstal, normal, demo, force, unknown_per_split, in_domain, detect_only)
    render.out.print(f"[green]created[/] {result.project_file}" + (" with synthetic demo data in data/" if demo else ""))
    if result.study == "detection":
        found = (f"{len(result.classes)} defect class(es): {', '.join(result.classes)}" if result.classes
                 else "bad parts: Severstal's defective strips" if result.settings.get("normal.severstal_root")
                 else "no defect folder")
        render.note(f"detection study (good and bad parts, {found}): stage 1 alone answers no_defect / defect; "
                    "no classifier is trained")
    if result.splits:
        render.show(render.table(f"Splits written to osd.toml ({len(result.classes)} classes, each unknown once)",
                                 ["split", "known", "unknown"],
                                 [[k, ", ".join(v["known"]), ", ".join(v["unknown"])] for k, v in result.splits.items()]))
    if result.offline_weights:
        users = "PatchCore uses" if result.study == "detection" else "classifier and PatchCore use"
        render.note(f"offline ImageNet weights found: {users} tf_efficientnet_lite0 (imagenet)")
    render.out.print(f"next: cd {path} && osd data check" + (" && osd run-all" if demo else ""))


@data_app.command("check")
@command
def data_check_cmd(project: o.Project = None, set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
                   verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every image a note counts")] = False
                   ) -> None:
    """Report images per class and split, sizes, unreadable files, duplicates and normal images."""
    report = _project(project, set_).check()
    if json_out:
        render.emit_json(report.to_dict())
    else:
        render.show_data_report(report)
        small = (report.normal or {}).get("smaller_than_crop_size") or []
        if verbose and small:
            render.show(render.table(f"Normal images smaller than normal.crop_size ({len(small)})", ["image, size"],
                                     [[x] for x in small]))
    if not report.ok:
        render.error("data not usable: " + "; ".join(report.problems))
        raise typer.Exit(1)


# ---------------------------------------------------------------- one-stage


@app.command("train")
@command
def train_cmd(split: o.Split = "a", force: o.Force = False, device: o.Device = None, project: o.Project = None,
              set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False) -> None:
    """Train the closed-set classifier on a split's known classes."""
    result = _project(project, set_, device, json_out).train(split, force)
    render.emit_json(result.to_dict()) if json_out else render.show_train(result)


@app.command("embed")
@command
def embed_cmd(split: o.Split = "a", force: o.Force = False, device: o.Device = None, project: o.Project = None,
              set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False) -> None:
    """Compute penultimate-layer embeddings and logits for every image of a split."""
    result = _project(project, set_, device, json_out).embed(split, force)
    render.emit_json(result.to_dict()) if json_out else render.show_embed(result)


@app.command("calibrate")
@command
def calibrate_cmd(split: o.Split = "a", force: o.Force = False, device: o.Device = None, project: o.Project = None,
                  set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
                  acceptance: o.Acceptance = None) -> None:
    """Fit the Mahalanobis scorer and set tau and kappa on known validation images."""
    _check_acceptance(acceptance)
    result = _project(project, set_, device, json_out).calibrate(split, force, acceptance)
    render.emit_json(result.to_dict()) if json_out else render.show_calibration(result)


@app.command("osr")
@command
def osr_cmd(split: o.Split = "a", force: o.Force = False, device: o.Device = None, project: o.Project = None,
            set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False) -> None:
    """Evaluate one-stage open-set recognition on a split's test images."""
    from osd import artifacts

    p = _project(project, set_, device, json_out)
    with artifacts.step_log() as steps:
        result = p.osr(split, force)
    render.emit_json({**result.to_dict(), "steps": [{"step": n, "cached": c} for n, c in steps]}) if json_out \
        else render.show_osr(result, steps)


# ---------------------------------------------------------------- two-stage


@patchcore_app.command("fit")
@command
def patchcore_fit_cmd(force: o.Force = False, device: o.Device = None, project: o.Project = None,
                      set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
                      acceptance: o.Acceptance = None) -> None:
    """Fit PatchCore on normal images and set its threshold on calibration normals."""
    _check_acceptance(acceptance)
    result = _project(project, set_, device, json_out).patchcore_fit(force, acceptance)
    render.emit_json(result.to_dict()) if json_out else render.show_patchcore(result)


@app.command("cascade")
@command
def cascade_cmd(
    split: o.Split = "a",
    mode: Annotated[Optional[str], typer.Option("--mode", help="Mode printed first: strict | ignore_no_defect")] = None,
    force: o.Force = False, device: o.Device = None, project: o.Project = None,
    set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Run the two-stage cascade (PatchCore, then the classifier) on a split's test images."""
    extra = list(set_ or []) + ([f"cascade.mode={mode}"] if mode else [])
    p = _project(project, extra, device, json_out)
    result = p.cascade(split, force)
    render.emit_json(result.to_dict()) if json_out else render.show_cascade(result, p.config.cascade.mode)


@app.command("outcomes")
@command
def outcomes_cmd(
    split: o.Split = "a",
    force: o.Force = False, device: o.Device = None, project: o.Project = None,
    set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Three outcomes (no_defect, known class, unknown) on defect and normal test images (normal.in_domain)."""
    result = _project(project, set_, device, json_out).outcomes(split, force)
    render.emit_json(result.to_dict()) if json_out else render.show_outcomes(result)


@app.command("predict")
@command
def predict_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH",
                                                help="Images, folders (recursive) or .txt files listing paths")],
    split: o.Split = "a",
    approach: Annotated[str, typer.Option("--approach", help="one-stage | cascade | both")] = "both",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write every row to this CSV file")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass")] = 16,
    engine: Annotated[str, typer.Option("--engine", help="torch | onnx (the graphs of osd export)")] = "torch",
    export_dir: Annotated[Optional[Path], typer.Option("--export-dir", help="Folder of osd export [default: "
                                                       "outputs/split_<x>/export]")] = None,
    device: o.Device = None, project: o.Project = None, set_: o.Set = None, debug: o.Debug = False,
    json_out: o.Json = False,
) -> None:
    """Apply a split's fitted models to new images (never trains); one row per input.

    In a detection project (good and bad parts) --split and --approach are not used: stage 1 alone
    answers no_defect / defect.
    """
    from osd.pipeline.predict import expand_inputs

    if out is not None and (out.is_dir() or not out.parent.is_dir()):  # said before any image is predicted
        raise ConfigError(f"--out {out}: " + (f"a folder; give a CSV file's path, e.g. {out / 'rows.csv'}"
                                              if out.is_dir() else f"its folder {out.parent} does not exist"))
    p = _project(project, set_, device)
    inputs = list(expand_inputs(paths))
    if not inputs:
        render.error("no images found in " + ", ".join(map(str, paths)) + " (nothing to predict)")
        raise typer.Exit(1)
    predictor = p.predictor(split, approach, engine, export_dir)
    keep = json_out or len(inputs) <= render.PREDICT_TABLE_ROWS
    rows, unreadable = _predict_rows(predictor, inputs, batch_size, out, keep, json_out)
    if json_out:
        render.emit_json({"split": split, "approach": approach, "models": predictor.provenance, "rows": rows,
                          "unreadable": unreadable, "notes": predictor.notes})
    else:
        render.show_predictions(rows, len(inputs), unreadable, out, predictor.provenance)
    if unreadable:
        render.error(f"{unreadable} of {len(inputs)} input(s) got no decision (rows whose status is not 'ok': "
                     "'unreadable' or 'invalid_score', each with its reason)")
        raise typer.Exit(1)


def _predict_rows(predictor, inputs: list, batch_size: int, out: Optional[Path], keep: bool, quiet: bool
                  ) -> tuple[list[dict], int]:
    """Stream the predictor's rows (to ``out`` as CSV, written atomically); the rows kept and the
    count of inputs that got no decision."""
    import csv

    from osd import artifacts
    from osd.pipeline.predict import COLUMNS, DETECTION_COLUMNS
    from osd.records import row_cell  # the cells of every predictions file osd writes

    columns = DETECTION_COLUMNS if predictor.detect_only else COLUMNS
    rows: list[dict] = []
    counts = {"unreadable": 0}

    def run(sink) -> None:  # noqa: ANN001 - a text file or None; rows stream through, memory stays bounded
        writer = csv.DictWriter(sink, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore") \
            if sink is not None else None
        if writer is not None:
            writer.writeheader()
        with render.RichReporter(quiet=quiet).task("predicting", len(inputs)) as task:
            for row in predictor.predict(inputs, batch_size):
                counts["unreadable"] += row["status"] != "ok"
                if writer is not None:
                    writer.writerow({k: row_cell(row.get(k)) for k in columns})
                if keep:
                    rows.append(row)
                task.advance(1)

    if out is not None:
        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                run(fh)

        artifacts.atomic_write(out, write)
    else:
        run(None)
    return rows, counts["unreadable"]


@app.command("monitor")
@command
def monitor_cmd(
    rows: Annotated[list[Path], typer.Argument(metavar="ROWS", help="CSV files osd predict --out wrote, oldest first "
                                               "(each file a batch)")],
    split: o.Split = "a",
    window: Annotated[Optional[int], typer.Option("--window", help="Batches of N consecutive images across the "
                                                  "files instead of one batch per file")] = None,
    export_dir: Annotated[Optional[Path], typer.Option("--export-dir", help="An export bundle (osd export): its "
                                                       "reference, without the study's outputs")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the checks over the batches to this PNG")] = None,
    unknowns: Annotated[bool, typer.Option("--unknowns", help="Also group the images called unknown by embedding "
                                           "similarity, with contact sheets (needs the project)")] = False,
    project: o.Project = None, set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Do the study's thresholds still hold? Batches of predict rows against the reference the study stored.

    Exit code: 0 every batch ok, 3 a batch to watch, 4 a batch that drifted (1: an error).
    """
    from osd.api import monitor_bundle

    if unknowns and export_dir is not None:
        raise ConfigError("--unknowns needs the project's classifier to embed the images; run it where the study's "
                          "outputs are (without --export-dir)")
    groups = None
    if export_dir is not None:
        result = monitor_bundle(rows, export_dir, window, plot)
    else:
        p = _project(project, set_, None, json_out)
        result = p.monitor(rows, split, window, plot)
        groups = p.unknowns(rows, split) if unknowns else None
    if json_out:
        render.emit_json({**result.to_dict(), **({"unknowns": groups.to_dict()} if groups else {})})
    else:
        render.show_monitor(result)
        if groups:
            render.show_unknowns(groups)
    if result.worst in ("watch", "drift"):
        raise typer.Exit(3 if result.worst == "watch" else 4)


# ---------------------------------------------------------------- study


@app.command("bench")
@command
def bench_cmd(split: o.Split = "a", device: o.Device = None, project: o.Project = None,
              set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False) -> None:
    """Measure latency and throughput of both approaches, stage by stage."""
    result = _project(project, set_, device, json_out).bench(split)
    render.emit_json(result.to_dict()) if json_out else render.show_bench(result)


@app.command("report")
@command
def report_cmd(
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds to report (default: "
                                                 "project.seeds, else every seed with results on disk)")] = None,
    project: o.Project = None, set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Rebuild summary.csv, plots and report.html from cached artifacts (no recomputation)."""
    result = _project(project, set_).report(seeds=_seed_list(seeds))
    render.emit_json(result) if json_out else render.show_summary(result)


def _seed_list(seeds: str | None) -> list[int] | None:
    try:
        return [int(x) for x in seeds.split(",") if x.strip()] if seeds else None
    except ValueError:
        from osd.errors import ConfigError

        raise ConfigError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None


@app.command("export")
@command
def export_cmd(
    split: o.Split = "a",
    approach: Annotated[str, typer.Option("--approach", help="one-stage | cascade | both")] = "both",
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the graphs and the model card "
                                                "[default: outputs/split_<x>/export]")] = None,
    force: o.Force = False, device: o.Device = None, project: o.Project = None, set_: o.Set = None,
    debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Export a split's fitted models to ONNX with a model card, checked against torch on its test images."""
    result = _project(project, set_, device, json_out).export(split, approach, out, force)
    if json_out:
        render.emit_json(result.to_dict())
        return
    p = result.parity
    worst = ", ".join(f"{k} {v:.1e}" for k, v in p["max_relative_difference"].items())
    what = "detection study" if result.split == "-" else f"split {result.split}"
    render.note(f"{what}: {', '.join(result.files)} in {result.out_dir}\n"
                f"parity on {p['images']} test images: largest relative difference {worst} (tolerance "
                f"{p['tolerance']:g}), every decision identical")
    render.out.print(render.cached_tag(result.cached))


@app.command("run-all")
@command
def run_all_cmd(
    splits: Annotated[str, typer.Option("--splits", help="Comma-separated splits, e.g. a,c [default: every split "
                                        "of osd.toml]")] = "",
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: "
                                                 "project.seeds, else project.seed)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="(split, seed) jobs at once in local processes; "
                                      "torch threads are divided between them")] = 1,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. "
                                                     "tcp://10.0.0.5:8786 (pip install 'osd[cluster]')")] = None,
    force: o.Force = False, device: o.Device = None, project: o.Project = None,
    set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Run the whole study: PatchCore once, then every step per split, then the report."""
    names = [s.strip() for s in splits.split(",") if s.strip()]
    result = _project(project, set_, device, json_out).run_all(names or None, _seed_list(seeds), force, jobs,
                                                               scheduler)
    render.emit_json(result) if json_out else render.show_run_all(result)
    if result["failed"]:
        for f in result["failed"]:
            render.error(f"{f['job']}: {f['error']}")
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        render.error("interrupted")
        sys.exit(130)

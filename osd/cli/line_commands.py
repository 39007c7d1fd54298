"""The line's commands: export the study's models, predict new images, monitor the rows over time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from osd.cli import line_views, render
from osd.cli import options as o
from osd.cli.root import app
from osd.cli.shared import command, on_project, open_project
from osd.errors import ConfigError


@app.command(rich_help_panel="On the line", name="export")
@on_project()
def export_cmd(
    p, split: o.Split = "a",
    approach: Annotated[str, typer.Option("--approach", help="one-stage | cascade | both")] = "both",
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the graphs and the model card "
                                                "[default: outputs/split_<x>/export]")] = None,
    force: o.Force = False, json_out: o.Json = False,
) -> None:
    """Export a split's fitted models to ONNX with a model card, checked against torch on its test images."""
    result = p.export(split, approach, out, force)
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


def _out_file_first(own: dict[str, object]) -> None:
    """--out is a CSV file in an existing folder: said before any image is predicted."""
    out = own.get("out")
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        raise ConfigError(f"--out {out}: " + (f"a folder; give a CSV file's path, e.g. {out / 'rows.csv'}"
                                              if out.is_dir() else f"its folder {out.parent} does not exist"))


@app.command(rich_help_panel="On the line", name="predict")
@on_project(before=_out_file_first)
def predict_cmd(
    p,
    paths: Annotated[list[Path], typer.Argument(metavar="PATH",
                                                help="Images, folders (recursive) or .txt files listing paths")],
    split: o.Split = "a",
    approach: Annotated[str, typer.Option("--approach", help="one-stage | cascade | both")] = "both",
    out: Annotated[Optional[Path], typer.Option("--out", help="Write every row to this CSV file")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass")] = 16,
    engine: Annotated[str, typer.Option("--engine", help="torch | onnx (the graphs of osd export)")] = "torch",
    export_dir: Annotated[Optional[Path], typer.Option("--export-dir", help="Folder of osd export [default: "
                                                       "outputs/split_<x>/export]")] = None,
    json_out: o.Json = False,
) -> None:
    """Apply a split's fitted models to new images (never trains); one row per input.

    In a detection project (good and bad parts) --split and --approach are not used: stage 1 alone
    answers no_defect / defect.
    """
    from osd.pipeline.predict import expand_inputs

    inputs = list(expand_inputs(paths))
    if not inputs:
        render.error("no images found in " + ", ".join(map(str, paths)) + " (nothing to predict)")
        raise typer.Exit(1)
    predictor = p.predictor(split, approach, engine, export_dir)
    keep = json_out or len(inputs) <= line_views.PREDICT_TABLE_ROWS
    rows, unreadable = _predict_rows(predictor, inputs, batch_size, out, keep, json_out)
    if json_out:
        render.emit_json({"split": split, "approach": approach, "models": predictor.provenance, "rows": rows,
                          "unreadable": unreadable, "notes": predictor.notes})
    else:
        line_views.show_predictions(rows, len(inputs), unreadable, out, predictor.provenance)
    if unreadable:
        render.error(f"{unreadable} of {len(inputs)} input(s) got no decision (rows whose status is not 'ok': "
                     "'unreadable' or 'invalid_score', each with its reason)")
        raise typer.Exit(1)


def _make_baseline(rows: list[Path], split: str, window: Optional[int], export_dir: Optional[Path],
                   variant_column: Optional[str], project: Optional[Path], set_: Optional[list[str]], json_out: bool
                   ) -> None:
    """``osd monitor --make-baseline``: the line's own baseline, beside the bundle or the split."""
    from osd.api import monitor_bundle_baseline

    if export_dir is not None:
        made = monitor_bundle_baseline(rows, export_dir, window or 25, variant_column)
    else:
        made = open_project(project, set_, quiet=json_out).monitor_baseline(rows, split, window or 25, variant_column)
    if json_out:
        render.emit_json(made.to_dict())
    else:
        line_views.show_baseline(made)


def _predict_rows(predictor, inputs: list, batch_size: int, out: Optional[Path], keep: bool, quiet: bool
                  ) -> tuple[list[dict], int]:
    """Stream the predictor's rows (to ``out`` as CSV, written atomically); the rows kept and the
    count of inputs that got no decision."""

    from osd import artifacts
    from osd.csvrows import CsvSink, row_cell  # the one CSV writer; the cells of every predictions file
    from osd.pipeline.predict import COLUMNS, DETECTION_COLUMNS

    columns = DETECTION_COLUMNS if predictor.detect_only else COLUMNS
    rows: list[dict] = []
    counts = {"unreadable": 0}

    def run(sink) -> None:  # noqa: ANN001 - a text file or None; rows stream through, memory stays bounded
        writer = CsvSink(sink, columns, row_cell) if sink is not None else None
        with render.RichReporter(quiet=quiet).task("predicting", len(inputs)) as task:
            for row in predictor.predict(inputs, batch_size):
                counts["unreadable"] += row["status"] != "ok"
                if writer is not None:
                    writer.write(row)
                if keep:
                    rows.append(row)
                task.advance(1)

    if out is not None:
        partial = out.with_name(out.stem + ".partial" + out.suffix)

        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                try:
                    run(fh)
                except KeyboardInterrupt:  # the rows done are kept beside, never as the finished file
                    fh.flush()
                    done = sum(1 for _ in tmp.open(encoding="utf-8")) - 1
                    artifacts.atomic_write(partial, lambda t: t.write_bytes(tmp.read_bytes()))
                    raise KeyboardInterrupt(f"interrupted after {done} of {len(inputs)} input(s): their rows are kept "
                                            f"in {partial}; {out} is written only when every input is done (run the "
                                            "command again for all of them)") from None

        artifacts.atomic_write(out, write)
        partial.unlink(missing_ok=True)  # a finished file supersedes the rows of an interrupted run
    else:
        run(None)
    return rows, counts["unreadable"]


MonitorPlot = Annotated[Optional[Path], typer.Option("--plot", help="Write the checks over the batches to this PNG "
                                                     "(with a baseline: the control chart, and an HTML page beside it)")]
MakeBaseline = Annotated[bool, typer.Option("--make-baseline", help="Take these rows as the line in control (Phase I) "
                                            "and store the line's own baseline beside the split or the bundle; later "
                                            "runs chart against it")]
VariantColumn = Annotated[Optional[str], typer.Option("--variant-column", help="With --make-baseline: a baseline per "
                                                      "part variant, named by this column of the rows, or 'folder' "
                                                      "(the image's parent folder)")]
FalseAlarmEvery = Annotated[float, typer.Option("--false-alarm-every", help="With a baseline: at most one false alarm "
                                                "per this many images of an unchanged line")]


@app.command(rich_help_panel="On the line", name="monitor")
@command
def monitor_cmd(
    rows: Annotated[list[Path], typer.Argument(metavar="ROWS", help="CSV files osd predict --out wrote, oldest first "
                                               "(each file a batch)")],
    split: o.Split = "a",
    window: Annotated[Optional[int], typer.Option("--window", help="Batches of N consecutive images across the "
                                                  "files instead of one batch per file")] = None,
    export_dir: Annotated[Optional[Path], typer.Option("--export-dir", help="An export bundle (osd export): its "
                                                       "reference, without the study's outputs")] = None,
    plot: MonitorPlot = None,
    make_baseline: MakeBaseline = False,
    variant_column: VariantColumn = None,
    false_alarm_every: FalseAlarmEvery = 10000,
    unknowns: Annotated[bool, typer.Option("--unknowns", help="Also group the images called unknown by embedding "
                                           "similarity, with contact sheets (needs the project)")] = False,
    project: o.Project = None, set_: o.Set = None, debug: o.Debug = False, json_out: o.Json = False,
) -> None:
    """Do the study's thresholds still hold? Batches of predict rows against the line's baseline or the study.

    First, once: --make-baseline with rows of the line in control (its first days): the line's own limits,
    kept beside the split or the bundle. From then on the rows are charted against it (an EWMA chart per
    statistic) at the stated --false-alarm-every rate; until then, each batch is tested
    against the study's reference (1% false drift per batch, so a long run of an unchanged line reads
    drift somewhere: every output says so).

    Exit code: 0 every batch tested was ok, 3 a batch to watch (no baseline), 4 a batch that drifted (with
    a baseline: an alarm on a chart, at most once per --false-alarm-every images of an unchanged line), 5
    no batch could be tested (a note says why), 1 an error.
    """
    from osd.api import monitor_bundle

    if make_baseline:
        return _make_baseline(rows, split, window, export_dir, variant_column, project, set_, json_out)
    if variant_column is not None:
        raise ConfigError("--variant-column is a setting of the baseline: give it with --make-baseline")
    if unknowns and export_dir is not None:
        raise ConfigError("--unknowns needs the project's classifier to embed the images; run it where the study's "
                          "outputs are (without --export-dir)")
    groups = None
    if export_dir is not None:
        result = monitor_bundle(rows, export_dir, window, plot, false_alarm_every)
    else:
        p = open_project(project, set_, quiet=json_out)
        result = p.monitor(rows, split, window, plot, false_alarm_every)
        groups = None
        if unknowns:
            from osd.errors import DataError

            try:
                groups = p.unknowns(rows, split)
            except DataError as exc:  # a day without unknowns: the monitor's own result still stands
                result = dataclasses.replace(result, notes=[*result.notes, f"--unknowns: {exc}"])
    if json_out:
        render.emit_json({**result.to_dict(), **({"unknowns": groups.to_dict()} if groups else {})})
    else:
        line_views.show_monitor(result)
        if groups:
            line_views.show_unknowns(groups)
    if result.worst in ("watch", "drift", "not tested"):
        raise typer.Exit({"watch": 3, "drift": 4, "not tested": 5}[result.worst])

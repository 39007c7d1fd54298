"""The study's commands: each parses its own options, calls one method of :class:`osd.Project` and
shows the record it returns (the shared options come from :func:`osd.cli.shared.on_project`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from osd.cli import options as o
from osd.cli import render, views
from osd.cli.root import app, data_app, patchcore_app
from osd.cli.shared import command, on_project


def _acceptance_first(own: dict[str, object]) -> None:
    """Checked before anything is read, so a bad value is the one line whatever the project holds."""
    from osd.api import check_acceptance

    check_acceptance(own.get("acceptance"))


@app.command(rich_help_panel="The study", name="init")
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
    design: Annotated[str, typer.Option(
        "--design", help="Splits: listed (NEU's seed splits a, b, c; each of your classes unknown once) | complete "
        "(every way of hiding --unknown-per-split classes: NEU, 15 splits, each trained per seed)")] = "listed",
    detect_only: Annotated[bool, typer.Option(
        "--detect-only", help="Good parts and bad parts: stage 1 alone, no_defect / defect (chosen by itself for "
        "normal images with zero or one defect class)")] = False,
    debug: o.Debug = False,
) -> None:
    """Create a project folder with a commented osd.toml and a data README."""
    from osd.project import init_project

    with render.err.status("writing the project" + (" and synthetic demo data" if demo else "") + " ..."):
        result = init_project(path, neu, severstal, normal, demo, force, unknown_per_split, in_domain, detect_only,
                              design)
    render.out.print(f"[green]created[/] {result.project_file}" + (" with synthetic demo data in data/" if demo else ""))
    if result.study == "detection":
        found = (f"{len(result.classes)} defect class(es): {', '.join(result.classes)}" if result.classes
                 else "bad parts: Severstal's defective strips" if result.settings.get("normal.severstal_root")
                 else "no defect folder")
        render.note(f"detection study (good and bad parts, {found}): stage 1 alone answers no_defect / defect; "
                    "no classifier is trained")
    if result.splits:
        complete = result.settings.get("splits.design") == "complete"
        what = (f"the complete design, {len(result.splits)} splits: every way of hiding {unknown_per_split}" if complete
                else "each unknown once")
        render.show(render.table(f"Splits written to osd.toml ({len(result.classes)} classes, {what})",
                                 ["split", "known", "unknown"],
                                 [[k, ", ".join(v["known"]), ", ".join(v["unknown"])] for k, v in result.splits.items()]))
    if result.offline_weights:
        users = "PatchCore uses" if result.study == "detection" else "classifier and PatchCore use"
        render.note(f"offline ImageNet weights found: {users} tf_efficientnet_lite0 (imagenet)")
    render.out.print(f"next: cd {path} && osd data check" + (" && osd run-all" if demo else ""))


@data_app.command("check")
@on_project(device=False)
def data_check_cmd(p, json_out: o.Json = False,
                   verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every image a note counts")] = False
                   ) -> None:
    """Report images per class and split, sizes, unreadable files, duplicates and normal images."""
    report = p.check()
    if json_out:
        render.emit_json(report.to_dict())
    else:
        views.show_data_report(report)
        small = (report.normal or {}).get("smaller_than_crop_size") or []
        if verbose and small:
            render.show(render.table(f"Normal images smaller than normal.crop_size ({len(small)})", ["image, size"],
                                     [[x] for x in small]))
    if not report.ok:
        render.error("data not usable: " + "; ".join(report.problems))
        raise typer.Exit(1)


# ---------------------------------------------------------------- one-stage


@app.command(rich_help_panel="The study", name="train")
@on_project(views.show_train)
def train_cmd(p, split: o.Split = "a", force: o.Force = False):
    """Train the closed-set classifier on a split's known classes."""
    return p.train(split, force)


@app.command(rich_help_panel="The study", name="embed")
@on_project(views.show_embed)
def embed_cmd(p, split: o.Split = "a", force: o.Force = False):
    """Compute penultimate-layer embeddings and logits for every image of a split."""
    return p.embed(split, force)


@app.command(rich_help_panel="The study", name="validate")
@on_project(views.show_validation)
def validate_cmd(p, split: o.Split = "a", force: o.Force = False):
    """Validation signals of the split's regimen: closed-set accuracy, leave-one-known-class-out AUROC."""
    return p.validate(split, force)


@app.command(rich_help_panel="The study", name="calibrate")
@on_project(views.show_calibration, before=_acceptance_first)
def calibrate_cmd(p, split: o.Split = "a", force: o.Force = False, acceptance: o.Acceptance = None):
    """Fit the Mahalanobis scorer and set tau and kappa on known validation images."""
    return p.calibrate(split, force, acceptance)


@app.command(rich_help_panel="The study", name="osr")
@on_project()
def osr_cmd(p, split: o.Split = "a", force: o.Force = False, json_out: o.Json = False) -> None:
    """Evaluate one-stage open-set recognition on a split's test images."""
    from osd import artifacts

    with artifacts.step_log() as steps:
        result = p.osr(split, force)
    render.emit_json({**result.to_dict(), "steps": [{"step": n, "cached": c} for n, c in steps]}) if json_out \
        else views.show_osr(result, steps)


# ---------------------------------------------------------------- two-stage


@patchcore_app.command("fit")
@on_project(views.show_patchcore, before=_acceptance_first)
def patchcore_fit_cmd(p, force: o.Force = False, acceptance: o.Acceptance = None):
    """Fit PatchCore on normal images and set its threshold on calibration normals."""
    return p.patchcore_fit(force, acceptance)


@app.command(rich_help_panel="The study", name="cascade")
@on_project(settings=lambda own: [f"cascade.mode={own['mode']}"] if own.get("mode") else [])
def cascade_cmd(
    p, split: o.Split = "a",
    mode: Annotated[Optional[str], typer.Option("--mode", help="Mode printed first: strict | ignore_no_defect")] = None,
    force: o.Force = False, json_out: o.Json = False,
) -> None:
    """Run the two-stage cascade (PatchCore, then the classifier) on a split's test images."""
    result = p.cascade(split, force)
    render.emit_json(result.to_dict()) if json_out else views.show_cascade(result, p.config.cascade.mode)


@app.command(rich_help_panel="The study", name="outcomes")
@on_project(views.show_outcomes)
def outcomes_cmd(p, split: o.Split = "a", force: o.Force = False):
    """Three outcomes (no_defect, known class, unknown) on defect and normal test images (normal.in_domain)."""
    return p.outcomes(split, force)


# ---------------------------------------------------------------- study


@app.command(rich_help_panel="The study", name="bench")
@on_project(views.show_bench)
def bench_cmd(p, split: o.Split = "a"):
    """Measure latency and throughput of both approaches, stage by stage."""
    return p.bench(split)


def _seed_list(seeds: str | None) -> list[int] | None:
    try:
        return [int(x) for x in seeds.split(",") if x.strip()] if seeds else None
    except ValueError:
        from osd.errors import ConfigError

        raise ConfigError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None


@app.command(rich_help_panel="The study", name="report")
@on_project(device=False)
def report_cmd(
    p, seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds to report (default: "
                                                    "project.seeds, else every seed with results on disk)")] = None,
    json_out: o.Json = False,
) -> None:
    """Rebuild summary.csv, plots and report.html from cached artifacts (no recomputation)."""
    result = p.report(seeds=_seed_list(seeds))
    render.emit_json(result.to_dict()) if json_out else views.show_summary(result)


@app.command(rich_help_panel="The study", name="run-all")
@on_project()
def run_all_cmd(
    p,
    splits: Annotated[str, typer.Option("--splits", help="Comma-separated splits, e.g. a,c [default: every split "
                                        "of osd.toml]")] = "",
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: "
                                                 "project.seeds, else project.seed)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="(split, seed) jobs at once in local processes; "
                                      "torch threads are divided between them")] = 1,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. "
                                                     "tcp://10.0.0.5:8786 (pip install 'osd[cluster]')")] = None,
    force: o.Force = False, json_out: o.Json = False,
) -> None:
    """Run the whole study: PatchCore once, then every step per split, then the report."""
    names = [s.strip() for s in splits.split(",") if s.strip()]
    result = p.run_all(names or None, _seed_list(seeds), force, jobs, scheduler)
    render.emit_json(result.to_dict()) if json_out else views.show_run_all(result)
    if result.failed:
        for f in result.failed:
            render.error(f"{f.job}: {f.error}")
        raise typer.Exit(1)

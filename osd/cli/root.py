"""The ``osd`` command's apps: the root and its two sub-apps (``osd data``, ``osd patchcore``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from osd._version import __version__

app = typer.Typer(
    name="osd",
    help="Image-level open-set defect detection on steel: one-stage (Mahalanobis) vs two-stage (PatchCore cascade).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the project's data.", no_args_is_help=True)
patchcore_app = typer.Typer(help="Stage-1 anomaly detector (PatchCore) on normal images.", no_args_is_help=True)
app.add_typer(data_app, name="data", rich_help_panel="The study")
app.add_typer(patchcore_app, name="patchcore", rich_help_panel="The study")


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

"""Option aliases shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Project = Annotated[
    Optional[Path],
    typer.Option("--project", "-p", help="Folder holding osd.toml, or the file itself [default: ./osd.toml]"),
]
Set = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a setting by dotted key, e.g. --set classifier.epochs=5 (repeatable)"),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else")]
Split = Annotated[str, typer.Option("--split", "-s",
                                    help="Split to run: a, b, c, or the NAME of any splits.NAME section in osd.toml")]
Force = Annotated[bool, typer.Option("--force", help="Recompute even when a cached result exists")]
Device = Annotated[
    Optional[str], typer.Option("--device", help="auto | cpu | cuda | mps (overrides project.device)")
]
Acceptance = Annotated[Optional[float], typer.Option(  # its range is checked in one place: _choose_acceptance
    "--acceptance", help="Choose an operating point: the share of non-test images the threshold "
    "accepts (0.99 = a 1% false-alarm target); written to osd.toml, thresholded anew without refitting")]

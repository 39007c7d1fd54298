"""The ``osd`` command. Heavy libraries are imported inside command bodies so ``osd --help`` is instant.

The commands live in rooms of one concern each: the study's steps (:mod:`osd.cli.study_commands`),
the line's export, predict and monitor (:mod:`osd.cli.line_commands`); their shared options and error
handling in :mod:`osd.cli.shared`. Importing them registers them on :data:`app`.
"""

from __future__ import annotations

import sys

# importing the command modules registers their commands, in this order in `osd --help`
import osd.cli.study_commands  # noqa: F401

# isort: split
import osd.cli.line_commands  # noqa: F401
from osd.cli import render
from osd.cli.root import app

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        render.error("interrupted")
        sys.exit(130)

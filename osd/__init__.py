"""osd: image-level open-set defect detection on steel surfaces.

The Python API is :class:`osd.Project` (``osd.api``), what the command line calls too; progress in a
notebook: ``osd.Project(path, reporter=osd.LineReporter(print))``.
"""

from __future__ import annotations

from typing import Any

from osd._version import __version__

__all__ = ["LineReporter", "OsdError", "Project", "__version__"]


def __getattr__(name: str) -> Any:
    # the package is the API's front door, as sqlite-utils exports Database: loaded on first use, so that
    # `import osd` (and `osd --help`) stays instant and the modules below never import the API
    if name == "Project":
        from osd.api import Project

        return Project
    if name == "LineReporter":
        from osd.progress import LineReporter

        return LineReporter
    if name == "OsdError":
        from osd.errors import OsdError

        return OsdError
    raise AttributeError(f"module 'osd' has no attribute {name!r}")

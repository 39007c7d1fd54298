"""What every command shares: errors as one red line, warnings once, and the project options.

:func:`on_project` is the one place the shared options live (like sqlite-utils' decorators over
click): a command declares only its own options and takes the project (an :class:`osd.Project`)
as ``p``; the decorator adds ``--project``, ``--set``, ``--device`` (for commands that compute),
``--debug`` and ``--json``, builds the project, calls the command and renders what it returns
(``--json``: the record's ``to_dict()``; else the command's view).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import typer

from osd.cli import options as o
from osd.cli import render
from osd.errors import OsdError, OsdWarning, SmallSampleWarning


class _Warnings:
    """How a command shows warnings: each of osd's once; a library's first line once; thresholds set on too
    few scores gathered and said once per split when the command ends (``say_thin``)."""

    def __init__(self, debug: bool):
        self.debug, self.seen, self.thin = debug, set(), {}

    def show(self, message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' hook
        if self.debug:
            render.warning(str(message))
            return
        if isinstance(message, SmallSampleWarning):
            what = self.thin.setdefault(message.scope or "the study", [])
            if message.what not in what:
                what.append(message.what)
            return
        # osd's own: the message; a library's (e.g. scikit-learn's about a version): its first line
        text = str(message) if issubclass(category, OsdWarning) else \
            f"{category.__name__}: {(str(message).strip().splitlines() or [''])[0][:160]}"
        if text not in self.seen:
            self.seen.add(text)
            render.warning(text)

    def say_thin(self) -> None:
        for scope, what in self.thin.items():
            render.warning(f"{scope}: thresholds set on too few scores, their acceptance known only to a wide "
                           f"95% interval: {'; '.join(what)} (more validation or calibration images narrow it)")
        self.thin.clear()


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn OsdError into one red line and exit 1 (a traceback only with --debug); show warnings in yellow."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        shown = _Warnings(debug)
        with warnings.catch_warnings():
            warnings.simplefilter("always", OsdWarning)
            warnings.showwarning = shown.show
            try:
                try:
                    return fn(*args, **kwargs)
                finally:
                    shown.say_thin()
            except OsdError as exc:
                if debug:
                    raise
                rebuild = getattr(exc, "rebuild", None)
                # run-all rebuilds the study's steps; an export, a baseline or predict rows are not among them
                study_step = not rebuild or not rebuild.startswith(("run-all", "export", "monitor", "predict"))
                render.error(str(exc) + (f"; run `osd {rebuild}`" + (" (or `osd run-all`)" if study_step else "")
                                         if rebuild else ""))
                raise typer.Exit(1) from None
            except KeyboardInterrupt as exc:
                if debug:
                    raise
                # a command whose partial work is kept elsewhere says so in the interrupt's own words
                render.error(str(exc) if str(exc) else "interrupted; finished steps are kept, run the command again "
                                                        "to resume")
                raise typer.Exit(130) from None

    return wrapper


def open_project(project: Path | None, settings: list[str] | None, device: str | None = None, quiet: bool = False):
    """The project as the Python API holds it (osd.Project), with progress on stderr unless ``quiet``."""
    from osd.api import Project

    extra = list(settings or []) + ([f"project.device={device}"] if device else [])
    return Project(project or Path("."), extra, render.RichReporter(quiet=quiet))


_SHARED: dict[str, tuple[Any, Any]] = {  # name: (annotation, default)
    "project": (o.Project, None),
    "set_": (o.Set, None),
    "device": (o.Device, None),
    "debug": (o.Debug, False),
    "json_out": (o.Json, False),
}


def on_project(view: Callable[[Any], None] | None = None, *, device: bool = True,
               settings: Callable[[dict[str, object]], list[str]] | None = None,
               before: Callable[[dict[str, object]], None] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make ``fn(p, **own options)`` a command over the project.

    ``view``: shows the returned record (``--json`` prints its ``to_dict()``); None: the command renders
    (it may declare ``json_out`` to learn whether ``--json`` was given). ``device``: offer ``--device``.
    ``settings(own options)``: further ``--set`` lines an option stands for (``cascade --mode``).
    ``before(own options)``: checks made before the project is read (a bad value is then the one line
    whatever the project holds)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = get_type_hints(fn, include_extras=True)
        own = [prm.replace(annotation=hints.get(name, prm.annotation))
               for name, prm in inspect.signature(fn).parameters.items() if name != "p"]
        declared = {prm.name for prm in own}
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
                 for name, (ann, default) in _SHARED.items()
                 if name not in declared and (device or name != "device")]

        @functools.wraps(fn)
        def run(**kw: Any) -> Any:
            shared = {name: kw.get(name) for name in _SHARED}
            mine = {name: kw[name] for name in declared}
            if before is not None:
                before(mine)
            p = open_project(shared["project"], list(shared["set_"] or []) + (settings(mine) if settings else []),
                             shared["device"], quiet=bool(shared["json_out"]))
            result = fn(p, **mine)
            if view is not None:
                render.emit_json(result.to_dict()) if shared["json_out"] else view(result)
            return result

        run.__signature__ = inspect.Signature([*own, *added])  # what typer reads: own options, then the shared
        run.__annotations__ = {}  # the signature holds them, evaluated
        return command(run)

    return decorate

"""Rich output: tables, progress, and the one-line messages of the command line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

out = Console()
err = Console(stderr=True)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):  # never more than four significant decimals (rates to three)
        a = abs(value)
        return (f"{value:.3f}" if a <= 1 else f"{value:.2f}" if a < 10 else f"{value:.1f}" if a < 1000
                else f"{value:,.0f}")
    return str(value)


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], caption: str | None = None) -> Table:
    # a narrow table must not wrap its title letter by letter
    t = Table(title=title, caption=caption, title_justify="left", min_width=min(len(title), out.width))
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*(fmt(v) for v in r))
    return t


def show(*renderables: Any) -> None:
    for r in renderables:
        out.print(r)


def emit_json(obj: Any) -> None:
    """Valid JSON whatever the values: a number that is not finite is written as null."""
    print(json.dumps(_finite(obj), indent=2, default=str, allow_nan=False))


def _finite(obj: Any) -> Any:
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def warning(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    err.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)


class _RichTask:
    def __init__(self, progress: Progress, task_id: int):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        info = "  ".join(f"{k} {fmt(v)}" for k, v in fields.items())
        self.progress.update(self.task_id, advance=n, info=info)


class RichReporter:
    """Progress bars on stderr, so that ``--json`` keeps stdout clean.

    One live display is shared by nested tasks (rich allows one at a time): run-all's overall
    bar and a step's own bar show together.
    """

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._progress: Progress | None = None
        self._depth = 0

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[_RichTask]:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=err, transient=False, disable=self.quiet,
            )
            self._progress.start()
        self._depth += 1
        progress = self._progress
        tid = progress.add_task(("  " * (self._depth - 1)) + description, total=total, info="")
        try:
            yield _RichTask(progress, tid)
        finally:
            self._depth -= 1
            if self._depth == 0:
                progress.stop()
                self._progress = None

    def note(self, message: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)
        else:
            note(message)


def cached_tag(cached: bool) -> str:
    return "[cyan]cached[/]" if cached else "[green]computed[/]"

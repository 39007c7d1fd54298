"""How long-running library code reports progress without printing: a callback object.

The command line passes a rich-backed reporter; tests and library users get the silent one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Task(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None) -> Any: ...
    def note(self, message: str) -> None: ...


class _NullTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        pass


class NullReporter:
    """Reports nothing."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        yield _NullTask()

    def note(self, message: str) -> None:
        pass


def ensure(reporter: Reporter | None) -> Reporter:
    return reporter if reporter is not None else NullReporter()


class LineReporter:
    """One line when a task starts and one when it ends (with its time), and each note, through
    ``write`` (``print`` in a notebook): the library itself never prints."""

    def __init__(self, write: Any):
        self.write = write

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        import time

        start = time.perf_counter()
        self.write(f"{description}" + (f" ({total})" if total else ""))
        yield _NullTask()
        self.write(f"  {description}: done in {time.perf_counter() - start:.1f} s")

    def note(self, message: str) -> None:
        self.write(message)

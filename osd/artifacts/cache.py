"""One cached step: the lock, the key, compute-or-read, and ``require`` for a step's consumers."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osd.artifacts.codec import load_record, peek, save
from osd.artifacts.files import plain
from osd.artifacts.provenance import Provenance
from osd.errors import ArtifactError, LineageError

# ---------------------------------------------------------------- one writer at a time


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while an artifact is computed.

    A second osd process that wants the same artifact waits here (``on_wait`` is told once) and
    then finds the first one's result in the cache instead of computing it again. The lock is
    the operating system's (``fcntl.flock``): it is released when the holder exits or is killed.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, the atomic writes still hold
        yield
        return
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the block
    except OSError as exc:
        raise ArtifactError(f"{lock_path}: cannot create ({exc.strerror or type(exc).__name__})") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"{path.name}: another osd process is computing it; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


# ---------------------------------------------------------------- one cached step


@dataclass(frozen=True)
class Step:
    """A validated artifact record: what a step computed now or found in the cache under its key.

    Callers use this very object (never a second read of the file), so what they act on is what
    was validated.
    """

    path: Path
    key: str
    id: str
    provenance: Provenance
    payload: Any
    cached: bool

    @property
    def lineage(self) -> Provenance:
        """The provenance with the artifact's own id: what a result built from it records."""
        return self.provenance.adding(artifact_id=self.id)


_STEP_LOG: contextvars.ContextVar[list[tuple[str, bool]] | None] = contextvars.ContextVar("osd_step_log", default=None)


@contextlib.contextmanager
def step_log() -> Iterator[list[tuple[str, bool]]]:
    """Within the block, each cached step this context runs is listed once, in the order it finished:
    (its name, whether it was read from the cache). A command reports every step as it happened
    (two processes on one split: the one that waited finds some steps made by the other)."""
    log: list[tuple[str, bool]] = []
    token = _STEP_LOG.set(log)
    try:
        yield log
    finally:
        _STEP_LOG.reset(token)


def _logged(step: Step) -> Step:
    log = _STEP_LOG.get()
    if log is not None:
        name = step.provenance.step or step.path.stem
        if name not in {n for n, _ in log}:
            log.append((name, step.cached))
    return step


def cached_step(path: Path, key: str, compute: Callable[[], tuple[Any, Provenance]], *, force: bool = False,
                on_wait: Callable[[str], None] | None = None) -> Step:
    """The one cached-step mechanism: ``inputs by identity -> key -> (cached | lock, compute, save)``.

    ``key`` must cover the config it depends on, the inputs' content or upstream artifact ids and
    the algorithm version. The cache is read first; on a miss the step takes the artifact's lock
    (a second process waits there, then finds the first one's result), looks again, and only
    then calls ``compute() -> (payload, provenance)``. The result is saved atomically with its
    provenance and returned as the same object, so nothing is read back unvalidated.
    """
    path = Path(path)
    if not force and (record := load_record(path, key)) is not None:
        return _logged(Step(path, key, record["id"], Provenance.of(record["provenance"]), record["payload"], True))
    with exclusive(path, on_wait):
        if not force and (record := load_record(path, key)) is not None:  # computed while this one waited
            return _logged(Step(path, key, record["id"], Provenance.of(record["provenance"]), record["payload"], True))
        payload, prov = compute()
        artifact_id = save(path, key, payload, prov)
        return _logged(Step(path, key, artifact_id, Provenance.of(plain(prov)), payload, False))


def require(path: Path, rebuild: str, what: str, inputs: dict[str, str] | None = None, payload: bool = True) -> Step:
    """An artifact loaded without a key (``predict``, ``export``), checked against its lineage.

    ``inputs`` maps an input name of its provenance to the artifact id it must have been built
    from; a missing artifact or a broken link raises one line, ``rebuild`` (the step that makes it,
    e.g. ``"train --split a"``) on the error. ``payload=False``
    reads the record only (its id and provenance), not the arrays.
    """
    record = load_record(path, None) if payload else peek(path)
    if record is None:
        raise ArtifactError(f"{path}: no {what}", rebuild=rebuild)
    recorded = (record.get("provenance") or {}).get("inputs") or {}
    for name, expected in (inputs or {}).items():
        if recorded.get(name) != expected:
            raise LineageError(
                f"{path}: this {what} artifact was built from another {name} ({recorded.get(name) or 'none recorded'}) than "
                f"the one cached now ({expected}); the artifacts do not belong together (one was rebuilt or copied)",
                rebuild=rebuild)
    return Step(Path(path), record.get("key", ""), record["id"], Provenance.of(record["provenance"]),
                record.get("payload"), True)

"""Files written atomically (temporaries of dead processes cleaned), JSON without NaN, metrics.json merging."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from osd.artifacts.provenance import Provenance
from osd.errors import ArtifactError, OsdWarning
from osd.types import JsonObject

# ---------------------------------------------------------------- atomic writes


@functools.cache
def _file_mode() -> int:
    """0666 less the process umask, so shared results are as readable as any file the user makes."""
    try:  # Linux reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere reading it means setting it: restored at once
    os.umask(mask)
    return 0o666 & ~mask


_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the half-written temporaries of processes that died (e.g. ``kill -9``) in ``folder``."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP.match(p.name)
        if m and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file in the same folder and rename it into place.

    A failure (disk full, no permission, a file where a folder should be) raises ArtifactError
    with one line and leaves neither a partial file nor the temporary behind.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise ArtifactError(f"{path}: cannot write ({reason}); check the folder, its permissions and free disk space"
                            ) from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda t: t.write_bytes(data))


# ---------------------------------------------------------------- JSON without NaN


def plain(obj: Any, where: str = "", nulls: list[str] | None = None) -> Any:
    """JSON-ready copy: numpy values to Python, non-finite floats to None (their key paths go to ``nulls``)."""
    if isinstance(obj, Provenance):
        obj = obj.document()
    if isinstance(obj, dict):
        return {str(k): plain(v, f"{where}.{k}" if where else str(k), nulls) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, f"{where}[{i}]", nulls) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist(), where, nulls)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        if nulls is not None:
            nulls.append(where)
        return None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _leaf(where: str) -> str:
    return re.sub(r"\[\d+\]$", "", where).rsplit(".", 1)[-1]


def write_json(path: Path, obj: Any, reasons: dict[str, str] | None = None) -> Path:
    """Write JSON; a NaN or infinity becomes ``null``, its reason is recorded and a warning names it.

    ``reasons`` maps a key name (e.g. ``"false_alarm_rate"``) to why it can be undefined; the
    reasons land in a top-level ``"null_reasons"`` object.
    """
    nulls: list[str] = []
    data = plain(obj, "", nulls)
    if nulls:
        why = {w: (reasons or {}).get(_leaf(w), "undefined: computed over an empty or one-class set") for w in nulls}
        if isinstance(data, dict):
            data["null_reasons"] = {**data.get("null_reasons", {}), **why}
        shown = "; ".join(f"{w} ({r})" for w, r in list(why.items())[:4]) + (" ..." if len(why) > 4 else "")
        warnings.warn(f"{Path(path).name}: {len(nulls)} undefined value(s) written as null: {shown}", OsdWarning,
                      stacklevel=2)
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    """Parsed JSON; ``default`` (``{}``) when the file is missing; a warning and ``default`` when unreadable."""
    default = {} if default is None else default
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path}: unreadable JSON ({type(exc).__name__}); ignored", OsdWarning, stacklevel=2)
        return default


def set_aside(path: Path, why: str) -> Path:
    """Rename a bad file to ``<name>.corrupt-<time>`` so nothing is lost, with a warning."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    warnings.warn(f"{path}: {why}; kept as {aside.name}, a new one is written", OsdWarning, stacklevel=3)
    return aside


def _sections(path: Path) -> tuple[JsonObject, str | None]:
    """(metrics.json's sections, why it is damaged or None), without a warning: the caller says it once."""
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, f"not valid JSON ({type(exc).__name__})"
    if not isinstance(data, dict):
        return {}, f"holds a JSON {type(data).__name__}, not an object of sections"
    return data, None


def update_metrics(path: Path, section: str, values: Any, reasons: dict[str, str] | None = None,
                   others: Callable[[], JsonObject] | None = None) -> Path:
    """Merge one section into a split's metrics.json, keeping the others. A damaged file is set aside
    (one warning) and, metrics.json being an export of the cached records, rebuilt with every section
    ``others()`` gives (the other records cached for the split), not with this section alone."""
    path = Path(path)
    data, damaged = _sections(path)
    if damaged:
        set_aside(path, damaged)
        data = dict(others() if others else {})
    data.pop("null_reasons", None)  # rebuilt from every section's values below
    data[section] = values
    return write_json(path, data, reasons)


def write_outputs(path_csv, csv_text: str, metrics_path, section_name: str, section: JsonObject,
                  reasons: dict[str, str] | None = None, others: Callable[[], JsonObject] | None = None) -> None:
    """A step's readable outputs (its predictions CSV and its metrics.json section), rewritten only when
    they differ from what its artifact holds, so a cached step reads and never recomputes. ``others``:
    the split's other cached sections, for a metrics.json that has to be rebuilt (see :func:`update_metrics`)."""
    if path_csv is not None and (not Path(path_csv).is_file() or Path(path_csv).read_text(encoding="utf-8") != csv_text):
        write_text(Path(path_csv), csv_text)
    current, damaged = _sections(Path(metrics_path))
    if damaged or plain(current.get(section_name)) != plain(section):
        update_metrics(Path(metrics_path), section_name, section, reasons, others)

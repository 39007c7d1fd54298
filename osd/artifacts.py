"""Outputs layout, cache keys, provenance, and safe atomic writes.

A cached artifact is one ``.npz`` file that cannot execute code when loaded: numeric arrays
and tensors as arrays (``allow_pickle=False``), everything else as one JSON document stored
beside them. Fitted estimators are stored as their parameters and fitted arrays, and only the
classes named in :data:`SAFE_CLASSES` can be rebuilt. The record holds the cache key, a fresh
artifact id (downstream keys include it, so recomputing an input invalidates what was built
from it), the provenance (config sections, input ids, library versions) and the payload.

A different key, or an unreadable file, means "recompute" (the latter with a warning).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osd import __version__
from osd.errors import ArtifactError, LineageError, OsdWarning

FORMAT = "osd-artifact/1"
LIBRARIES = ("torch", "torchvision", "timm", "numpy", "scikit-learn", "scipy", "pillow")
# Estimators an artifact may rebuild; anything else in a file is refused, never imported.
SAFE_CLASSES = (
    "osd.osr.mahalanobis.MahalanobisScorer",
    "osd.osr.mahalanobis.MultiBlockMahalanobis",
    "osd.osr.thresholds.AcceptanceThreshold",
)


@functools.cache
def environment() -> dict[str, str]:
    """Package and library versions: part of every cache key and every provenance record."""
    env = {"osd": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = "absent"
    return env


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts, the library versions included."""
    blob = json.dumps([environment(), *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """Content hash of a file (remembered per size and modification time within a process)."""
    st = Path(path).stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)


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


def update_metrics(path: Path, section: str, values: Any, reasons: dict[str, str] | None = None) -> Path:
    """Merge one section into a split's metrics.json, keeping the others; a corrupt file is set aside."""
    path = Path(path)
    data: Any = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            set_aside(path, f"not valid JSON ({type(exc).__name__})")
            data = {}
        if not isinstance(data, dict):
            set_aside(path, f"holds a JSON {type(data).__name__}, not an object of sections")
            data = {}
    data.pop("null_reasons", None)  # rebuilt from every section's values below
    data[section] = values
    return write_json(path, data, reasons)


# ---------------------------------------------------------------- safe artifact files


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _pack(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        name = f"a{len(arrays)}"
        arrays[name] = obj.detach().cpu().numpy()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        arr = obj.astype(str) if obj.dtype == object else obj
        name = f"a{len(arrays)}"
        arrays[name] = arr
        return {"__array__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k, arrays), _pack(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    name = _qualname(obj)
    if name in SAFE_CLASSES:
        params = obj.get_params(deep=False)
        fitted = {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")}
        return {"__estimator__": name, "params": _pack(params, arrays), "fitted": _pack(fitted, arrays)}
    raise TypeError(f"cannot store a {name} in an osd artifact")


def _unpack(obj: Any, arrays: Any) -> Any:
    import torch

    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return torch.from_numpy(np.array(arrays[obj["__tensor__"]]))
    if "__array__" in obj:
        return np.array(arrays[obj["__array__"]])
    if "__dict__" in obj:
        return {_unpack(k, arrays): _unpack(v, arrays) for k, v in obj["__dict__"]}
    if "__tuple__" in obj:
        return tuple(_unpack(v, arrays) for v in obj["__tuple__"])
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__estimator__" in obj:
        name = obj["__estimator__"]
        if name not in SAFE_CLASSES:
            raise ValueError(f"refusing to rebuild {name!r}: not an osd estimator")
        module, _, cls_name = name.rpartition(".")
        est = getattr(importlib.import_module(module), cls_name)(**_unpack(obj["params"], arrays))
        for k, v in _unpack(obj["fitted"], arrays).items():
            setattr(est, k, v)
        return est
    raise ValueError(f"unknown entry {sorted(obj)[:3]}")


def save(path: Path, key: str, payload: Any, provenance: dict[str, Any] | None = None) -> str:
    """Write a cache entry atomically; return its new artifact id."""
    artifact_id = uuid.uuid4().hex[:16]
    arrays: dict[str, np.ndarray] = {}
    record = {"format": FORMAT, "key": key, "id": artifact_id, "provenance": plain(provenance or {}),
              "payload": _pack(payload, arrays)}
    meta = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)

    def write(t: Path) -> None:
        with t.open("wb") as fh:
            np.savez(fh, __record__=meta, **arrays)

    atomic_write(Path(path), write)
    return artifact_id


_RECENT: collections.OrderedDict[tuple[str, int, int], dict[str, Any]] = collections.OrderedDict()
_RECENT_SIZE = 8  # a run's steps read the same few artifacts again and again; a few, so memory stays small


def load_record(path: Path, key: str | None) -> dict[str, Any] | None:
    """``{"key", "id", "provenance", "payload"}`` when ``path`` holds an entry with this key (any key
    when None), else None. An unreadable entry is reported with a warning and treated as missing.

    The last few records read are remembered by file version (path, size, modification time): an
    artifact is never changed in place (atomic replace gives it a new version), so a step that reads
    its upstream again within one process does not unpack the file again. Callers only read payloads."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    version = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if version in _RECENT:
        _RECENT.move_to_end(version)
        record = _RECENT[version]
        return record if key is None or record.get("key") == key else None
    record = _read_record(path, key)
    if record is not None:
        _RECENT[version] = record
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)
    return record if record is not None and (key is None or record.get("key") == key) else None


def _read_record(path: Path, key: str | None) -> dict[str, Any] | None:
    """The record, its arrays unpacked; None when missing, unreadable, or (with ``key``) stale, in
    which case nothing is unpacked: the step recomputes it anyway."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            record = json.loads(bytes(npz["__record__"]).decode("utf-8"))
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise ValueError("not an osd artifact")
            if key is not None and record.get("key") != key:
                return None
            record["payload"] = _unpack(record["payload"], npz)
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
        warnings.warn(f"{path}: unreadable cache entry ({type(exc).__name__}: {str(exc)[:120]}); recomputing",
                      OsdWarning, stacklevel=2)
        return None
    return record


def load(path: Path, key: str | None) -> Any | None:
    record = load_record(path, key)
    return None if record is None else record["payload"]


def peek(path: Path) -> dict[str, Any] | None:
    """The record without its payload (key, id, provenance), or None; reads no arrays."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            record = json.loads(bytes(npz["__record__"]).decode("utf-8"))
    except Exception:  # noqa: BLE001
        return None
    record.pop("payload", None)
    return record if isinstance(record, dict) else None


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


@dataclass
class Step:
    """A validated artifact record: what a step computed now or found in the cache under its key.

    Callers use this very object (never a second read of the file), so what they act on is what
    was validated.
    """

    path: Path
    key: str
    id: str
    provenance: dict[str, Any]
    payload: Any
    cached: bool

    @property
    def lineage(self) -> dict[str, Any]:
        """The provenance with the artifact's own id: what a result built from it records."""
        return {**self.provenance, "artifact_id": self.id}


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
        name = str((step.provenance or {}).get("step") or step.path.stem)
        if name not in {n for n, _ in log}:
            log.append((name, step.cached))
    return step


def cached_step(path: Path, key: str, compute: Callable[[], tuple[Any, dict[str, Any]]], *, force: bool = False,
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
        return _logged(Step(path, key, record["id"], record["provenance"], record["payload"], True))
    with exclusive(path, on_wait):
        if not force and (record := load_record(path, key)) is not None:  # computed while this one waited
            return _logged(Step(path, key, record["id"], record["provenance"], record["payload"], True))
        payload, prov = compute()
        artifact_id = save(path, key, payload, prov)
        return _logged(Step(path, key, artifact_id, plain(prov), payload, False))


def require(path: Path, rebuild: str, what: str, inputs: dict[str, str] | None = None, payload: bool = True) -> Step:
    """An artifact loaded without a key (``predict``, ``export``), checked against its lineage.

    ``inputs`` maps an input name of its provenance to the artifact id it must have been built
    from; a missing artifact or a broken link raises one line naming ``rebuild``. ``payload=False``
    reads the record only (its id and provenance), not the arrays.
    """
    record = load_record(path, None) if payload else peek(path)
    if record is None:
        raise ArtifactError(f"{path}: no {what}; build it with `{rebuild}` (or `osd run-all`)")
    recorded = (record.get("provenance") or {}).get("inputs") or {}
    for name, expected in (inputs or {}).items():
        if recorded.get(name) != expected:
            raise LineageError(
                f"{path}: the {what} was built from another {name} ({recorded.get(name) or 'none recorded'}) than "
                f"the one cached now ({expected}); the artifacts do not belong together (one was rebuilt or copied); "
                f"rebuild with `{rebuild}`")
    return Step(Path(path), record.get("key", ""), record["id"], record["provenance"], record.get("payload"), True)


def write_outputs(path_csv, csv_text: str, metrics_path, section_name: str, section: dict[str, Any],
                  reasons: dict[str, str] | None = None) -> None:
    """A step's readable outputs (its predictions CSV and its metrics.json section), rewritten only when
    they differ from what its artifact holds, so a cached step reads and never recomputes."""
    if path_csv is not None and (not Path(path_csv).is_file() or Path(path_csv).read_text(encoding="utf-8") != csv_text):
        write_text(Path(path_csv), csv_text)
    current = read_json(Path(metrics_path))
    if not isinstance(current, dict) or plain(current.get(section_name)) != plain(section):
        update_metrics(Path(metrics_path), section_name, section, reasons)



# ---------------------------------------------------------------- provenance


def provenance(cfg: Any, step: str, algorithm: str, key: str, sections: Iterable[str],
               inputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """What produced a result: the config settings it depends on (dotted keys), the identities of
    its inputs (artifact ids, data fingerprints, weights hashes), the algorithm and library versions."""
    return {
        "step": step, "algorithm": algorithm, "cache_key": key,
        "config": cfg.flat(sections), "inputs": dict(inputs or {}), "environment": environment(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra,
    }


# ---------------------------------------------------------------- layout


class Layout:
    """Where every output lives, in the layout users of the original study know."""

    def __init__(self, output_dir: Path):
        self.root = Path(output_dir)

    def split(self, name: str) -> Path:
        return self.root / f"split_{name}"

    def manifest(self, name: str) -> Path:
        return self.split(name) / "split_manifest.csv"

    def classifier(self, name: str) -> Path:
        return self.split(name) / "classifier"

    def model(self, name: str) -> Path:
        return self.classifier(name) / "model.npz"

    def checkpoint(self, name: str) -> Path:
        """The training's last epoch, so an interrupted run resumes (removed when training ends)."""
        return self.classifier(name) / "checkpoint.npz"

    def embeddings(self, name: str) -> Path:
        return self.split(name) / "embeddings"

    def embeddings_file(self, name: str) -> Path:
        return self.embeddings(name) / "embeddings.npz"

    def osr(self, name: str) -> Path:
        return self.split(name) / "osr"

    def calibration(self, name: str) -> Path:
        return self.osr(name) / "calibration.npz"

    def thresholds(self, name: str) -> Path:
        """tau and kappa in words (readable; the calibration artifact is what steps read)."""
        return self.osr(name) / "thresholds.json"

    def osr_evaluation(self, name: str) -> Path:
        """The osr step's record (:class:`osd.records.OsrResult`)."""
        return self.osr(name) / "evaluation.npz"

    def osr_predictions(self, name: str) -> Path:
        return self.osr(name) / "predictions.csv"

    def odin(self, name: str) -> Path:
        return self.osr(name) / "odin.npz"

    def history(self, name: str) -> Path:
        """The classifier's per-epoch losses and accuracies (readable)."""
        return self.classifier(name) / "history.json"

    def classifier_config(self, name: str) -> Path:
        return self.classifier(name) / "config.json"

    def export(self, name: str) -> Path:
        """Where ``osd export`` writes a split's ONNX bundle by default."""
        return self.split(name) / "export"

    @staticmethod
    def export_record(folder: Path) -> Path:
        """The bundle's record (model card, sha256 of each graph) inside an export folder."""
        return Path(folder) / "export.npz"

    @staticmethod
    def export_graph(folder: Path, which: str) -> Path:
        """``one_stage`` / ``stage1`` / ``stage2`` graph of an export folder."""
        return Path(folder) / f"{which}.onnx"

    def plot(self, name: str, kind: str) -> Path:
        """One of the report's figures of a split (``roc``, ``distance_hist``, ``latency``, ...)."""
        return self.plots(name) / f"{kind}.png"

    def cascade(self, name: str) -> Path:
        return self.split(name) / "cascade"

    def stage1_scores(self, name: str) -> Path:
        return self.cascade(name) / "stage1_scores.npz"

    def cascade_evaluation(self, name: str) -> Path:
        """The cascade step's record (:class:`osd.records.CascadeResult`)."""
        return self.cascade(name) / "evaluation.npz"

    def cascade_predictions(self, name: str) -> Path:
        return self.cascade(name) / "predictions.csv"

    def outcomes(self, name: str) -> Path:
        return self.split(name) / "outcomes"

    def outcomes_evaluation(self, name: str) -> Path:
        """The outcomes step's record (:class:`osd.records.OutcomesResult`)."""
        return self.outcomes(name) / "evaluation.npz"

    def outcomes_predictions(self, name: str) -> Path:
        return self.outcomes(name) / "predictions.csv"

    def plots(self, name: str) -> Path:
        return self.split(name) / "plots"

    def metrics(self, name: str) -> Path:
        return self.split(name) / "metrics.json"

    def bench(self, name: str) -> Path:
        return self.split(name) / "bench.json"

    def bench_record(self, name: str) -> Path:
        """The bench step's record (:class:`osd.records.BenchResult`)."""
        return self.split(name) / "bench.npz"

    @property
    def summary(self) -> Path:
        return self.root / "summary.csv"

    @property
    def summary_three_outcome(self) -> Path:
        return self.root / "summary_three_outcome.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def summary_tex(self) -> Path:
        return self.root / "summary.tex"

    @property
    def report_record(self) -> Path:
        """The report's cache record (its key and what it returned)."""
        return self.root / "report.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def verdict_chart(self) -> Path:
        return self.root / "verdict.png"

    @property
    def patchcore(self) -> Path:
        return self.root / "patchcore"

    @property
    def detection(self) -> Path:
        """The detection study's folder (``project.study = detection``)."""
        return self.root / "detection"

    @property
    def detection_evaluation(self) -> Path:
        """The detection study's record (:class:`osd.pipeline.detection.DetectionResult`)."""
        return self.detection / "evaluation.npz"

    @property
    def detection_predictions(self) -> Path:
        return self.detection / "predictions.csv"

    @property
    def detection_metrics(self) -> Path:
        return self.detection / "metrics.json"

    @property
    def detection_export(self) -> Path:
        return self.detection / "export"

    @property
    def detector(self) -> Path:
        return self.patchcore / "patchcore.npz"

    @property
    def patchcore_stats(self) -> Path:
        """The PatchCore fit's statistics (sizes, timings, in-domain rates), read by the report."""
        return self.patchcore / "fit_stats.json"

    @property
    def patchcore_threshold(self) -> Path:
        return self.patchcore / "threshold.json"

    @property
    def patchcore_config(self) -> Path:
        return self.patchcore / "config.json"

    @property
    def patchcore_scores(self) -> Path:
        """Stage-1 scores of the calibration and test normals, by crop or image id."""
        return self.patchcore / "scores.json"

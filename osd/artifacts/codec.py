"""The artifact file: one ``.npz`` that cannot execute code when loaded, and the last few records read."""

from __future__ import annotations

import collections
import importlib
import importlib.metadata
import json
import math
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from osd.artifacts.files import atomic_write, plain
from osd.artifacts.provenance import Provenance
from osd.errors import OsdWarning

FORMAT = "osd-artifact/1"
# Estimators an artifact may rebuild; anything else in a file is refused, never imported.
SAFE_CLASSES = (
    "osd.osr.mahalanobis.MahalanobisScorer",
    "osd.osr.mahalanobis.MultiBlockMahalanobis",
    "osd.osr.thresholds.AcceptanceThreshold",
)



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


def save(path: Path, key: str, payload: Any, provenance: Provenance | None = None) -> str:
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



"""Outputs layout, cache keys, atomic joblib/JSON/CSV writes, and tolerant cache loads.

A cached artifact is a joblib file holding ``{"key", "version", "config", "payload"}``. The key
hashes the config sections that matter to the step, the fingerprints of its inputs and the
package version; a different key, or an unreadable file, means "recompute".
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import joblib

from osd import __version__
from osd.errors import OsdWarning


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (config sections, fingerprints)."""
    blob = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda t: t.write_text(text, encoding="utf-8"))


def write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda t: t.write_bytes(data))


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save(path: Path, key: str, payload: Any, config: dict[str, Any] | None = None) -> Path:
    """Write a cache entry atomically; the resolved config travels with it."""
    record = {"key": key, "version": __version__, "config": config or {}, "payload": payload}
    return _atomic(path, lambda t: joblib.dump(record, t))


def load(path: Path, key: str | None) -> Any | None:
    """The payload when ``path`` holds an entry with this key (any key when None), else None.

    A corrupt or truncated file is reported with a warning and treated as missing.
    """
    if not path.is_file():
        return None
    try:
        record = joblib.load(path)
        if not isinstance(record, dict) or "payload" not in record:
            raise ValueError("not an osd cache entry")
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
        warnings.warn(f"{path}: unreadable cache entry ({type(exc).__name__}: {exc}); recomputing", OsdWarning,
                      stacklevel=2)
        return None
    if key is not None and record.get("key") != key:
        return None
    return record["payload"]


def update_metrics(path: Path, section: str, values: Any) -> Path:
    """Merge one section into a split's metrics.json, keeping the others."""
    data = read_json(path)
    data[section] = values
    return write_json(path, data)


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

    def embeddings(self, name: str) -> Path:
        return self.split(name) / "embeddings"

    def osr(self, name: str) -> Path:
        return self.split(name) / "osr"

    def cascade(self, name: str) -> Path:
        return self.split(name) / "cascade"

    def plots(self, name: str) -> Path:
        return self.split(name) / "plots"

    def metrics(self, name: str) -> Path:
        return self.split(name) / "metrics.json"

    def bench(self, name: str) -> Path:
        return self.split(name) / "bench.json"

    @property
    def patchcore(self) -> Path:
        return self.root / "patchcore"

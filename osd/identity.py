"""One content identity: a file's sha256 (remembered per file version) and the cache key of any
JSON-able parts with the library versions. Everything osd keys or fingerprints goes through here."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

from osd import __version__

LIBRARIES = ("torch", "torchvision", "timm", "numpy", "scikit-learn", "scipy", "pillow")


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



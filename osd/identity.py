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

from osd._version import __version__

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


def text_digest(text: str) -> str:
    """A short stable hash of a text (a manifest's rows): the same 16 hex digits of sha256 as cache keys."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=8192)
def _digests(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    """(sha256, sha1) of one file version, from one read: the one memo of file contents."""
    h256, h1 = hashlib.sha256(), hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h256.update(block)
            h1.update(block)
    return h256.hexdigest(), h1.hexdigest()


def _version(path: Path) -> tuple[str, int, int]:
    st = Path(path).stat()
    return str(path), st.st_size, st.st_mtime_ns


def file_sha256(path: Path) -> str:
    """Content hash of a file (remembered per size and modification time within a process)."""
    return _digests(*_version(path))[0]


def file_sha1(path: Path) -> str:
    """The split manifests' per-image digest: sha1 of the same read as :func:`file_sha256`. Manifests
    have recorded sha1 since the first release; it stays, so that every manifest and every classifier
    cached on one keeps its key (a change of hash would retrain every project's classifiers)."""
    return _digests(*_version(path))[1]



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

from osd.artifacts.cache import Step, cached_step, exclusive, require, step_log
from osd.artifacts.codec import FORMAT, SAFE_CLASSES, load, load_record, peek, save
from osd.artifacts.files import (
    _file_mode,
    atomic_write,
    clean_stale_temporaries,
    plain,
    read_json,
    set_aside,
    update_metrics,
    write_bytes,
    write_json,
    write_outputs,
    write_text,
)
from osd.artifacts.layout import Layout
from osd.artifacts.provenance import Provenance, provenance
from osd.identity import LIBRARIES, _digests, cache_key, environment, file_sha256

__all__ = ["FORMAT", "LIBRARIES", "SAFE_CLASSES", "Layout", "Provenance", "Step", "_digests", "_file_mode", "atomic_write",
           "cache_key", "cached_step", "clean_stale_temporaries", "environment", "exclusive", "file_sha256", "load",
           "load_record", "peek", "plain", "provenance", "read_json", "require", "save", "set_aside", "step_log",
           "update_metrics", "write_bytes", "write_json", "write_outputs", "write_text"]

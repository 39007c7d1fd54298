"""What produced a result: settings, input identities, algorithm and library versions."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from osd.identity import environment

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



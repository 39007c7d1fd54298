"""What produced a result: settings, input identities, algorithm and library versions."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from osd.identity import environment
from osd.types import Json, JsonObject, Settings

_NAMED = ("step", "algorithm", "cache_key", "config", "inputs", "environment", "created")


@dataclass(frozen=True)
class Provenance:
    """What produced a result: the step and its algorithm version, its cache key, the settings it
    depends on (dotted keys), its inputs' identities (artifact ids, data fingerprints, weights
    hashes), the library versions, when; ``extra``: what a step adds (its split, the compute it ran
    on, an artifact's own id once saved). Stored and shown as one JSON object (:meth:`document`),
    the named fields first, in this order."""

    step: str = ""
    algorithm: str = ""
    cache_key: str = ""
    config: Settings = field(default_factory=dict)
    inputs: dict[str, Json] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    created: str = ""
    extra: JsonObject = field(default_factory=dict)
    # the named fields a stored document held (a document read back is written as it was read)
    named: tuple[str, ...] = field(default=_NAMED, compare=False, repr=False)

    def document(self) -> JsonObject:
        """The JSON object stored in an artifact and written beside it."""
        named = {"step": self.step, "algorithm": self.algorithm, "cache_key": self.cache_key, "config": self.config,
                 "inputs": self.inputs, "environment": self.environment, "created": self.created}
        return {**{k: v for k, v in named.items() if k in self.named}, **self.extra}

    @classmethod
    def of(cls, document: Mapping[str, Any] | Provenance | None) -> Provenance:
        """The provenance a stored JSON object holds (an empty one for None)."""
        if isinstance(document, Provenance):
            return document
        d = dict(document or {})
        return cls(str(d.get("step", "")), str(d.get("algorithm", "")), str(d.get("cache_key", "")),
                   dict(d.get("config") or {}), dict(d.get("inputs") or {}), dict(d.get("environment") or {}),
                   str(d.get("created", "")), {k: v for k, v in d.items() if k not in _NAMED},
                   tuple(k for k in _NAMED if k in d))

    def input(self, name: str) -> Json:
        """The identity of one input (None when none was recorded)."""
        return self.inputs.get(name)

    def setting(self, key: str, default: Json = None) -> Json:
        """One recorded setting by its dotted key."""
        return self.config.get(key, default)

    def get(self, key: str, default: Json = None) -> Json:
        """A field a step added (``weights``, ``split``, ``compute``, ``artifact_id``)."""
        return self.extra.get(key, default)

    def adding(self, **extra: Json) -> Provenance:
        """The same provenance with ``extra`` fields added (later ones win)."""
        return replace(self, extra={**self.extra, **extra})

    def __bool__(self) -> bool:
        return bool(self.document())

    @classmethod
    def empty(cls) -> Provenance:
        """No provenance (a record made without one): an empty document."""
        return cls(named=())


def provenance(cfg: Any, step: str, algorithm: str, key: str, sections: Iterable[str],
               inputs: Mapping[str, Json] | None = None, **extra: Json) -> Provenance:
    """What produced a result: the config settings it depends on (dotted keys), the identities of
    its inputs (artifact ids, data fingerprints, weights hashes), the algorithm and library versions."""
    return Provenance(step, algorithm, key, cfg.flat(sections), dict(inputs or {}), environment(),
                      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), dict(extra))

"""The embed step's record: what the classifier saw of each partition of a split.

:class:`Embeddings` is what the one-stage model, the baselines, the cascade and the three-outcome
study read; :meth:`Embeddings.payload` is what the step caches (``embeddings.npz``), in the layout
it has had since the first release, so a cached artifact reads back unchanged and keeps its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# the embeddings' partitions: tau and kappa are set on "threshold" images (see SplitManifest)
PARTS = ("train", "threshold", "test_known", "test_unknown")
NORMAL_PART = "test_normal"  # held-out normal images of the defects' line (normal.in_domain only)
READS = ("embeddings", "logits", "odin")  # what a baseline can read of a partition


@dataclass(frozen=True)
class EmbeddedPart:
    """One partition's images as the classifier saw them, row for row: the penultimate embedding, the
    pooled statistics of each stage, the logits, the label and the path (relative to ``neu.root``).
    ``odin``: ODIN's scores of the same images, once the ODIN step's are joined (:meth:`with_odin`)."""

    embeddings: np.ndarray
    logits: np.ndarray
    labels: list[str]
    paths: list[str]
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    odin: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def stats(self) -> dict[str, np.ndarray]:
        """Every pooled block by name: ``penultimate`` and the stages' statistics."""
        return {"penultimate": self.embeddings, **self.stages}

    def reads(self, name: str) -> np.ndarray:
        """The input a baseline reads (one of :data:`READS`)."""
        if name not in READS:
            raise KeyError(f"{name!r}: a partition holds {', '.join(READS)}")
        value = getattr(self, name)
        if value is None:
            raise KeyError(f"{name!r}: not joined to this partition")
        return value

    def with_odin(self, scores: np.ndarray) -> EmbeddedPart:
        return replace(self, odin=np.asarray(scores, dtype=np.float64))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddedPart:
        return cls(d["embeddings"], d["logits"], [str(x) for x in d["labels"]], [str(x) for x in d["paths"]],
                   dict(d.get("stages") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"embeddings": self.embeddings, "stages": self.stages, "logits": self.logits,
                "labels": list(self.labels), "paths": list(self.paths)}


@dataclass(frozen=True)
class Embeddings:
    """A split's embeddings: its known classes (the classifier's outputs, in order), each partition of
    :data:`PARTS` (and :data:`NORMAL_PART` where the line's normal images are tested), the images left
    out as unreadable (path -> reason), the embedding rate and the precision it ran at."""

    classes: list[str]
    parts: dict[str, EmbeddedPart]
    skipped: dict[str, str] = field(default_factory=dict)
    images_per_second: float = 0.0
    precision: str = "fp32"

    def __getitem__(self, name: str) -> EmbeddedPart:
        return self.parts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    @property
    def train(self) -> EmbeddedPart:
        return self.parts["train"]

    @property
    def threshold(self) -> EmbeddedPart:
        return self.parts["threshold"]

    @property
    def test_known(self) -> EmbeddedPart:
        return self.parts["test_known"]

    @property
    def test_unknown(self) -> EmbeddedPart:
        return self.parts["test_unknown"]

    def with_parts(self, **parts: EmbeddedPart) -> Embeddings:
        return replace(self, parts={**self.parts, **parts})

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Embeddings:
        return cls([str(c) for c in payload["classes"]],
                   {p: EmbeddedPart.from_dict(payload[p]) for p in (*PARTS, NORMAL_PART) if p in payload},
                   dict(payload.get("skipped") or {}), float(payload.get("images_per_second", 0.0)),
                   str(payload.get("precision", "fp32")))

    def payload(self) -> dict[str, Any]:
        """What the embed step caches (the layout of every ``embeddings.npz`` written so far)."""
        return {"classes": list(self.classes), "skipped": dict(self.skipped),
                **{name: part.to_dict() for name, part in self.parts.items()},
                "images_per_second": self.images_per_second, "precision": self.precision}

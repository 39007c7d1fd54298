"""One typed record per evaluation step: the cached payload, its ``metrics.json`` section, its rows.

Each step (``osr``, ``cascade``, ``outcomes``, ``bench``) computes one frozen record. The same
object is what the step caches (:meth:`Record.payload` / :meth:`Record.from_payload`), the only
source of its ``metrics.json`` section (:meth:`section`) and of its ``predictions.csv``
(:attr:`rows`, written by the records' CSV writer :func:`csv_text`), what the public function returns
and what ``osd report`` reads back from the step's artifact (:func:`stored`). ``metrics.json`` is
an export for people and other tools; nothing in osd reads it to compute or report a number.

The run fields (``cached``, ``predictions``, ``metrics_path``) say where this call found or wrote
the record; they are not part of the cached payload.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from osd.artifacts.provenance import Provenance
from osd.csvrows import csv_text, row_cell
from osd.types import Json, JsonObject

RUN_FIELDS = ("cached", "cached_stage1", "predictions", "metrics_path")
R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Rows:
    """Prediction rows: a header and each row's values, numbers kept as numbers (a reader of the record,
    the report's figures, gets them whole); formatted only when written (:meth:`csv`: exact floats,
    as every predictions file). Records cached before kept formatted strings: they read and
    write the same."""

    header: tuple[str, ...]
    cells: tuple[tuple[Any, ...], ...] = ()

    @classmethod
    def of(cls, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Rows:
        return cls(tuple(header), tuple(tuple(_plain(v) for v in r) for r in rows))

    def csv(self) -> str:
        return csv_text(self.header, self.cells, row_cell)

    def dicts(self) -> list[JsonObject]:
        """Each row keyed by the header."""
        return [dict(zip(self.header, r)) for r in self.cells]

    def column(self, name: str) -> list[Any]:
        i = self.header.index(name)
        return [r[i] for r in self.cells]

    def to_dict(self) -> JsonObject:
        return {"header": list(self.header), "cells": [list(r) for r in self.cells]}

    @classmethod
    def from_dict(cls, d: JsonObject) -> Rows:
        return cls(tuple(d["header"]), tuple(tuple(r) for r in d["cells"]))


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python number it holds (what the artifact codec stores as a number)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


@dataclass(frozen=True)
class Record:
    """A step's result: ``payload()`` is what its artifact caches, ``section()`` its metrics.json section."""

    def __post_init__(self) -> None:
        # a record built from a stored or hand-written mapping holds its provenance typed all the same
        prov = getattr(self, "provenance", None)
        if prov is not None and not isinstance(prov, Provenance):
            object.__setattr__(self, "provenance", Provenance.of(prov))

    def payload(self) -> JsonObject:
        """The cached payload: the record's fields but the run fields, rows and provenance as JSON objects."""
        return {f.name: _document(getattr(self, f.name)) for f in fields(self) if f.name not in RUN_FIELDS}

    @classmethod
    def from_payload(cls: type[R], d: JsonObject, **run: Any) -> R:
        readers = {f.name: _reader(cls, str(f.type)) for f in fields(cls)}
        kw = {k: readers[k](v) for k, v in d.items() if k in readers and k not in RUN_FIELDS}
        return cls(**kw, **run)

    def section(self) -> JsonObject:
        raise NotImplementedError

    def to_dict(self) -> JsonObject:
        """Everything but the rows (they are in the predictions file), for ``--json``."""
        return {f.name: _document(getattr(self, f.name)) for f in fields(self) if f.name != "rows"}


def _document(value: Any) -> Json:
    """A field as the JSON object it is stored as (rows, provenance, a nested record), else itself."""
    if isinstance(value, Provenance):
        return value.document()
    return value.to_dict() if is_dataclass(value) and not isinstance(value, type) else value


def _reader(cls: type, annotation: str) -> Callable[[Any], Any]:
    """How a field of ``cls`` is read back from its stored form: a typed field (rows, provenance, a
    frozen record of the module such as the detection metrics) by its own ``from_dict``; else as stored."""
    if annotation.endswith("Provenance"):
        return Provenance.of
    t = Rows if annotation == "Rows" else vars(sys.modules[cls.__module__]).get(annotation)
    if isinstance(t, type) and is_dataclass(t) and hasattr(t, "from_dict"):
        return t.from_dict
    return lambda v: v



def stored(cls: type[R], path: Path, plain: Callable[[Any], Any] | None = None) -> R | None:
    """The record a step cached at ``path``, as it was computed (None when there is none). ``plain``
    (e.g. :func:`osd.artifacts.plain`) turns its values into what metrics.json shows (NaN as None)."""
    from osd import artifacts

    payload = artifacts.load(path, None)
    if not isinstance(payload, dict):
        return None
    return cls.from_payload(plain(payload) if plain else payload, cached=True)


def cached_sections(layout: Any, split: str) -> JsonObject:
    """Every metrics.json section of ``split`` whose step record is cached under ``layout`` (an
    :class:`osd.artifacts.Layout`): what a damaged metrics.json is rebuilt from."""
    from osd import artifacts

    out: JsonObject = {}
    for name, cls, path in (("osr", OsrResult, layout.osr_evaluation(split)),
                            ("cascade", CascadeResult, layout.cascade_evaluation(split)),
                            ("three_outcome", OutcomesResult, layout.outcomes_evaluation(split)),
                            ("bench", BenchResult, layout.bench_record(split))):
        record = stored(cls, path)
        if record is not None:
            out[name] = artifacts.plain(record.section())
    return out


# ---------------------------------------------------------------- the steps' records


OSR_METHOD = "locked (penultimate Mahalanobis)"
MSP_SCORE = "negative max softmax of the classifier (higher = more unknown)"


@dataclass(frozen=True)
class OsrResult(Record):
    """The one-stage evaluation of a split: the configured method, max softmax, variants, baselines."""

    split: str
    classes: list[str]
    tau: float
    kappa: float
    osr: dict[str, float]
    msp: dict[str, float]
    features: str = "penultimate"
    blocks: list[str] = field(default_factory=list)
    variants: dict[str, JsonObject] = field(default_factory=dict)
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    selection: JsonObject = field(default_factory=dict)  # variant chosen without test data (reported only)
    baselines: dict[str, JsonObject] = field(default_factory=dict)  # OOD baselines beside the locked method
    thresholds: JsonObject = field(default_factory=dict)  # tau's and kappa's summaries
    operating_points: JsonObject = field(default_factory=dict)
    data: JsonObject = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance.empty)
    rows: Rows = Rows(())
    predictions: str = ""
    metrics_path: str = ""
    cached: bool = False

    @property
    def score_sign(self) -> str:
        from osd.osr.model import score_sign

        return score_sign(self.features)

    def to_dict(self) -> JsonObject:
        return {**super().to_dict(), "score_sign": self.score_sign, "positive_class": "unknown"}

    def section(self) -> JsonObject:
        return {
            **self.osr, "intervals95": self.intervals.get("osr", {}), "tau": self.tau, "thresholds": self.thresholds,
            "score": self.score_sign, "positive_class": "unknown", "features": self.features, "blocks": self.blocks,
            "method": OSR_METHOD if self.features == "penultimate"
            else f"configured variant ({self.features}); the locked method is under variants",
            "msp": {**self.msp, "intervals95": self.intervals.get("msp", {}), "kappa": self.kappa, "score": MSP_SCORE},
            "variants": self.variants, "baselines": self.baselines, "selection": self.selection,
            "operating_points": self.operating_points, "data": self.data, "provenance": self.provenance.document(),
        }


STAGE2_SCORE = ("negative max softmax of the split's classifier (higher = more unknown); the same score and values "
                "as the one-stage max-softmax baseline")
STAGE1_UNIT = "crop (an about-square image is one crop; a long one is cut into crops, its score is their largest)"
PATCHCORE_SCORE = "PatchCore: largest nearest-neighbour patch distance (higher = more anomalous)"


@dataclass(frozen=True)
class CascadeResult(Record):
    """The cascade on a split's test images: each mode's decisions, stage 2's ranking, stage 1, the
    paired verdict one-stage minus each mode."""

    split: str
    classes: list[str]
    threshold: float
    kappa: float | None
    modes: dict[str, dict[str, float]]
    stage2: JsonObject
    stage1_detection_rate: float
    stage1_false_alarm_rate: float | None
    intervals: dict[str, JsonObject] = field(default_factory=dict)
    versus_one_stage: JsonObject = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    stage1: JsonObject = field(default_factory=dict)  # threshold summary, units, in-domain AUROC, points
    data: JsonObject = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance.empty)
    rows: Rows = Rows(())
    cached_stage1: bool = False
    predictions: str = ""
    metrics_path: str = ""
    cached: bool = False

    def section(self) -> JsonObject:
        return {
            "stage2": {**self.stage2, "intervals95": self.intervals.get("stage2", {}), "score": STAGE2_SCORE},
            **{m: {**v, "intervals95": self.intervals.get(m, {})} for m, v in self.modes.items()},
            "kappa": self.kappa, "kappa_rule": "stage 2 says unknown when max softmax < kappa",
            "stage1": {"detection_rate_neu_test": self.stage1_detection_rate,
                       "false_alarm_rate_normal_test_crops": self.stage1_false_alarm_rate,
                       **self.stage1, "score": PATCHCORE_SCORE},
            "versus_one_stage": {"difference": "one-stage minus cascade, same test images, paired stratified bootstrap",
                                 **self.versus_one_stage},
            "data": self.data,
            "provenance": self.provenance.document(),
        }


OUTCOMES_DEFINITIONS = ("see osd.three_outcome: normal pass rate = normal images answered no_defect; defect detection "
                        "rate = defect images answered otherwise; known accuracy among detected known defects; unknown "
                        "rejection; accuracy and macro-F1 over the K known classes, unknown and no_defect")


@dataclass(frozen=True)
class OutcomesResult(Record):
    """The three-outcome study of a split (no_defect, a known class, unknown) on a line's own good parts."""

    split: str
    approaches: dict[str, JsonObject]
    stage1_auroc: JsonObject
    versus: dict[str, JsonObject]
    counts: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)
    thresholds: JsonObject = field(default_factory=dict)
    normal_source: str = ""
    provenance: Provenance = field(default_factory=Provenance.empty)
    rows: Rows = Rows(())
    predictions: str = ""
    metrics_path: str = ""
    cached: bool = False

    def section(self) -> JsonObject:
        return {
            "approaches": self.approaches, "stage1_auroc": self.stage1_auroc,
            "versus": {"difference": "first minus second approach, same test images, paired bootstrap stratified by "
                                     "known / unknown / normal", **self.versus},
            "thresholds": self.thresholds, "definitions": OUTCOMES_DEFINITIONS,
            "data": {"images": self.counts, "normal_source": self.normal_source, "skipped": self.skipped},
            "provenance": self.provenance.document(),
        }


@dataclass(frozen=True)
class BenchResult(Record):
    """Latency (batch 1, per stage) and throughput of both approaches on one split's models."""

    split: str
    device: str
    threads: int
    cpu: str
    torch: str
    osd: str
    runs: int
    warmup: int
    batch_size: int
    classifier: str
    patchcore: str
    one_stage: JsonObject
    two_stage: JsonObject
    peak_rss_mb: float
    median_note: str
    provenance: Provenance = field(default_factory=Provenance.empty)
    cache_key: str = ""
    cached: bool = False

    def section(self) -> JsonObject:
        return {k: v for k, v in self.payload().items() if k != "cache_key"}

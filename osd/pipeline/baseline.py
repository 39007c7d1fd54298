"""The line's own baseline for ``osd monitor`` (Phase I of a control chart): made once from rows the engineer
declares in control, stored beside the project's split or the export bundle, sealed.

The file is plain JSON: each variant's limits (:class:`osd.control_chart.Limits` per statistic), the
window, the variant column, the rows it was made from, and two digests: ``reference`` (the models'
reference the rows were decided against: the thresholds and the study's stored distributions, so a
baseline made before a refit, or for another split or bundle, is refused) and ``seal`` (of the
baseline's own content, so a file edited by hand is refused).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osd import artifacts
from osd.control_chart import MIN_WINDOWS, Limits, baseline_limits, resampled_windows, window_statistics, windows
from osd.errors import ArtifactError, DataError
from osd.monitor import Reference
from osd.types import JsonObject

# 3: interquartile means, not medians; 2: the spread at least the resampled rows'; limits widened by the error
BASELINE_VERSION = "monitor-baseline/3"
FOLDER = "folder"  # the variant is the image's parent folder


def reference_digest(ref: Reference) -> str:
    """The identity of the models a baseline belongs to: every array of the reference, by content."""
    h = hashlib.sha256()
    for name, a in sorted(ref.arrays().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(a).tobytes() if a.dtype.kind != "U" else "\x1f".join(a.tolist()).encode())
    return h.hexdigest()[:16]


def variant_of(row: Mapping[str, object], column: str | None) -> str:
    """A row's variant: the named column's value, the image's parent folder (``folder``), or "" (one line)."""
    if not column:
        return ""
    if column == FOLDER:
        return Path(str(row.get("path") or "")).parent.name
    return str(row.get(column) or "")


@dataclass(frozen=True)
class Baseline:
    """The line's own limits, per variant ("" = the whole line)."""

    window: int
    variant_column: str
    limits: dict[str, dict[str, Limits]]
    reference: str
    rows: int
    files: tuple[str, ...]

    def content(self) -> JsonObject:
        return {"version": BASELINE_VERSION, "window": self.window, "variant_column": self.variant_column,
                "limits": {v: {k: vars(lim) for k, lim in per.items()} for v, per in self.limits.items()},
                "reference": self.reference, "rows": self.rows, "files": list(self.files)}

    @classmethod
    def from_content(cls, d: Mapping[str, object]) -> Baseline:
        limits = {str(v): {str(k): Limits(**lim) for k, lim in per.items()} for v, per in dict(d["limits"]).items()}
        return cls(int(d["window"]), str(d["variant_column"] or ""), limits, str(d["reference"]), int(d["rows"]),
                   tuple(d["files"]))


def _seal(content: JsonObject) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def make_baseline(rows: Sequence[Mapping[str, object]], ref: Reference, window: int, variant_column: str | None,
                  files: Sequence[str]) -> Baseline:
    """Each variant's limits from its own windows of ``window`` images, in the rows' order; refused where a
    variant has fewer windows than the charts need (say how many rows)."""
    if window < 5:
        raise DataError(f"--window {window}: at least 5 images a batch")
    by_variant: dict[str, list[Mapping[str, object]]] = {}
    for r in rows:
        by_variant.setdefault(variant_of(r, variant_column), []).append(r)
    limits: dict[str, dict[str, Limits]] = {}
    for variant, vrows in by_variant.items():
        stats = [window_statistics(w, ref.stage1_threshold) for w in windows(vrows, window)]
        got = baseline_limits(stats, resampled_windows(vrows, window, ref.stage1_threshold))
        if not got:
            who = f"variant {variant!r}" if variant_column else "the baseline"
            raise DataError(f"{who}: {len(vrows)} row(s), {len(stats)} window(s) of {window}; the charts need at "
                            f"least {MIN_WINDOWS} windows with values ({MIN_WINDOWS * window} readable rows"
                            f"{' of each variant' if variant_column else ''}): give more in-control rows, or a "
                            "smaller --window")
        limits[variant] = got
    return Baseline(int(window), variant_column or "", limits, reference_digest(ref), len(rows), tuple(files))


def write_baseline(b: Baseline, path: Path) -> Path:
    content = b.content()
    return artifacts.write_json(path, {"baseline": content, "seal": _seal(content)})


def read_baseline(path: Path, ref: Reference) -> Baseline | None:
    """The baseline at ``path`` (None where there is none), refused when tampered with or made against
    other models (a refit, another split or bundle)."""
    path = Path(path)
    if not path.is_file():
        return None
    rebuild = "monitor ROWS --make-baseline (rows of the line in control)"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        content, seal = d["baseline"], d["seal"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a baseline osd wrote ({type(exc).__name__})", rebuild=rebuild) from None
    if _seal(content) != seal:
        raise ArtifactError(f"{path}: its content does not match its seal (edited after it was made)", rebuild=rebuild)
    if content.get("version") != BASELINE_VERSION:
        raise ArtifactError(f"{path}: a baseline of another version ({content.get('version')})", rebuild=rebuild)
    b = Baseline.from_content(content)
    if b.reference != reference_digest(ref):
        raise DataError(f"{path}: made against other models than these (a refit, another split or export bundle): "
                        "its limits do not apply; make a baseline anew from in-control rows of these models "
                        "(osd monitor ROWS --make-baseline)")
    return b

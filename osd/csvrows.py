"""osd's one CSV writer: every CSV file osd writes (manifests, predictions, summaries, the detection
study's rows, ``osd predict --out``) goes through :func:`csv_text` or, streamed row by row,
:class:`CsvSink`, as the csv module writes it (``\n`` line ends, None empty)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import numpy as np


def summary_cell(v: Any) -> str:
    """A summary table's cell: four decimals, an interval as ``low-high``, empty for a missing value."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return "-".join(f"{x:.4f}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


def row_cell(v: Any) -> str:
    """A prediction row's cell: a float as its shortest exact form (``repr``: it reads back to the same
    float), empty for a missing value. Six significant digits were shorter, but a score re-read from them
    could tie the threshold that the in-memory decision broke (issue 48): the file holds what decided."""
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(float(v)) if np.isfinite(v) else str(float(v))  # float(): numpy's repr names its type
    return str(v)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any] | dict[str, Any]],
             cell: Callable[[Any], Any] = lambda v: v) -> str:
    """osd's one CSV writer: ``header``, then each row (a sequence, or a mapping read by the header's
    names, missing keys empty) with every value through ``cell`` (default: as the csv module writes
    it, None empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        values = [r.get(k) for k in header] if isinstance(r, dict) else list(r)
        w.writerow([cell(v) for v in values])
    return buf.getvalue()


class CsvSink:
    """Rows streamed to an open text file (memory flat in their number): the header first, then each
    row (a mapping read by the header's names; keys beyond them left out) through ``cell``."""

    def __init__(self, fh: TextIO, header: Sequence[str], cell: Callable[[Any], Any] = lambda v: v):
        self.header, self.cell = list(header), cell
        self._w = csv.writer(fh, lineterminator="\n")
        self._w.writerow(self.header)

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow([self.cell(row.get(k)) for k in self.header])

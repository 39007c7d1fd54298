"""The report's record: what ``osd report`` (and ``run-all``) wrote and what it found."""

from __future__ import annotations

from dataclasses import dataclass, field

from osd.records import Record
from osd.types import JsonObject


@dataclass(frozen=True)
class Report(Record):
    """The files written (summary.csv, its Markdown and LaTeX tables, report.html), the summary rows
    (numbers as numbers), the headline tables as the page shows them, the answer in sentences, the
    verdict with its tests, the caveats, the operating points and the figures of each run.

    ``run-all`` caches it beside the report (``report_record``) and reads it back when nothing
    upstream changed. A detection study's report has no splits, verdict or three-outcome rows."""

    summary_csv: str
    report_html: str
    rows: list[JsonObject]
    answer: list[str]
    seeds: list[int]
    caveats: list[str] = field(default_factory=list)
    summary_md: str = ""
    summary_tex: str = ""
    headline: dict[str, list[JsonObject]] = field(default_factory=dict)
    splits: list[str] = field(default_factory=list)
    three_outcome_rows: list[JsonObject] = field(default_factory=list)
    verdict: JsonObject = field(default_factory=dict)
    operating_points: JsonObject = field(default_factory=dict)
    stale: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    plots: dict[str, list[str]] | list[str] = field(default_factory=dict)  # per run; a detection study's: a list
    study: str = "open-set"

    @property
    def verdict_sentence(self) -> str:
        """The answer as one paragraph."""
        return " ".join(self.answer)

    def to_dict(self) -> JsonObject:
        """Everything, the summary rows included (they are the answer's numbers), for ``--json``."""
        return {**self.payload(), "verdict_sentence": self.verdict_sentence}

"""Numbers as a reader sees them: three decimals for rates and scores, never more than four
significant decimals anywhere (the full precision stays in metrics.json and summary.csv)."""

from __future__ import annotations

import math
from typing import Any


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: rates and scores to ``digits`` decimals, large values with separators,
    tiny ones in three significant figures; ``-`` for missing or not-a-number."""
    if x is None or isinstance(x, bool):
        return "-" if x is None else ("yes" if x else "no")
    if isinstance(x, int):
        return f"{x:,}"
    if not isinstance(x, float):
        return str(x)
    if not math.isfinite(x):
        return "-"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a == 0 or a >= 10 ** -digits:
        return f"{x:.{digits}f}"
    return f"{x:.2e}"


def fmt_signed(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:+.{digits}f}"


def fmt_ci(ci: Any, digits: int = 3) -> str:
    """``[0.961, 0.989]`` or an empty string when there is no interval."""
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2):
        return ""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_seconds(s: float | None) -> str:
    """A duration: ``0.8 s``, ``12 s``, ``3 min 20 s``."""
    if s is None or not math.isfinite(s):
        return "-"
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {int(round(s % 60))} s"

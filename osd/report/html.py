"""One self-contained HTML file: tables and plots (embedded as base64 PNG), no external references."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from osd import __version__
from osd.config import Config

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child,td:nth-child(2){text-align:left}
.caveat{background:#fff6e0;border-left:4px solid #e0a800;padding:.5rem 1rem;margin:.4rem 0}
.plots img{max-width:48%;margin:.3rem;border:1px solid #eee;vertical-align:top}
code,pre{background:#f6f6f6;font-size:.8rem}pre{padding:.6rem;overflow:auto;max-height:300px}
"""

COLS = ["split", "approach", "closed_set_accuracy", "auroc", "fpr_at_95_tpr", "known_acceptance",
        "unknown_rejection", "open_set_accuracy", "open_set_macro_f1", "oscr"]
HUMAN_COLS = {"split": "split", "approach": "approach", "closed_set_accuracy": "closed-set acc.", "auroc": "AUROC",
              "fpr_at_95_tpr": "FPR@95", "known_acceptance": "known acc.", "unknown_rejection": "unknown rej.",
              "open_set_accuracy": "open-set acc.", "open_set_macro_f1": "macro-F1", "oscr": "OSCR"}

THREE_COLS = ["split", "approach", "normal_pass_rate", "defect_detection_rate", "known_accuracy_detected",
              "unknown_rejection", "three_outcome_accuracy", "three_outcome_macro_f1", "stage1_image_auroc"]
THREE_HUMAN_COLS = {"split": "split", "approach": "approach", "normal_pass_rate": "normal pass",
                    "defect_detection_rate": "defects detected", "known_accuracy_detected": "known acc. (detected)",
                    "unknown_rejection": "unknown rej.", "three_outcome_accuracy": "3-outcome acc.",
                    "three_outcome_macro_f1": "3-outcome macro-F1", "stage1_image_auroc": "stage-1 AUROC (images)"}


def _cell(v: Any, ci: Any = None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        text = f"{v:.3f}"
        if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, float) for x in ci):
            text += f' <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>'
        return text
    if isinstance(v, list):
        return html.escape(", ".join(map(str, v)))
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], cols: list[str], names: dict[str, str] | None = None) -> str:
    names = names or {}
    head = "".join(f"<th>{html.escape(names.get(c, c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c), r.get(f'{c}_ci95'))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f'<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(d: dict[str, Any], depth: int = 0) -> list[str]:
    """A result section as tables: its values, then each nested object under its own heading."""
    flat = {k: v for k, v in d.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in d.items() if isinstance(v, dict)}
    out = [_table([{"metric": k, "value": v} for k, v in flat.items()], ["metric", "value"])] if flat else []
    for k, v in nested.items():
        out.append(f"<h{min(4 + depth, 6)}>{html.escape(k)}</h{min(4 + depth, 6)}>")
        if depth < 2:
            out += _section(v, depth + 1)
        else:
            out.append(f"<pre>{html.escape(json.dumps(v, indent=1))}</pre>")
    return out


def _img(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def render_html(cfg: Config, rows: list[dict[str, Any]], per_split: dict[str, Any], pc_stats: dict[str, Any],
                caveats: list[str], verdict: dict[str, Any] | None = None, sentence: str = "",
                verdict_plot: str | None = None, three: list[dict[str, Any]] | None = None) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>osd report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>Open-set defect detection: one-stage vs two-stage</h1>",
             f"<p>osd {__version__}; project {html.escape(str(cfg.base_dir))}</p>",
             "<h2>The answer</h2>", f"<p><b>{html.escape(sentence)}</b></p>"]
    if verdict and verdict.get("summary"):
        parts.append(_table(verdict["summary"], ["mode", "metric", "averaged_over", "mean_difference", "mean_ci95",
                                                 "verdict", "splits_one_stage_better", "splits_cascade_better",
                                                 "holm_one_stage_better", "holm_cascade_better"],
                            {"averaged_over": "mean over", "mean_difference": "one-stage minus cascade (mean)",
                             "mean_ci95": "95% interval (runs and images resampled)",
                             "splits_one_stage_better": "runs: one-stage better (95% CI)",
                             "splits_cascade_better": "runs: cascade better (95% CI)",
                             "holm_one_stage_better": "after Holm: one-stage", "holm_cascade_better": "after Holm: cascade"}))
    if verdict_plot:
        parts.append('<div class="plots">' + _img(verdict_plot) + "</div>")
    parts += [f'<div class="caveat">{html.escape(c)}</div>' for c in caveats]
    parts.append("<h2>Summary (95% bootstrap intervals in brackets)</h2>")
    parts.append(_table(rows, COLS, HUMAN_COLS))
    if three:
        parts.append("<h2>Three outcomes: defect and normal test images of the line (95% intervals)</h2>")
        parts.append(_table(three, THREE_COLS, THREE_HUMAN_COLS))
    if pc_stats:
        parts.append("<h2>Stage 1: PatchCore fit</h2>")
        d = pc_stats.get("indomain") or {}
        if d.get("available"):
            parts.append("<h3>Stage 1 in-domain: crops of defective Severstal images (labels from train.csv masks)</h3>")
            parts.append(_table([{"metric": k, "value": v} for k, v in d.items() if k != "available"],
                                ["metric", "value"]))
        parts.append(_table([{"setting": k, "value": v} for k, v in pc_stats.items() if not isinstance(v, dict)],
                            ["setting", "value"]))
    for name, info in per_split.items():
        m = info["metrics"]
        parts.append(f"<h2>Split {name.upper()}</h2>")
        for section, diffs in info.get("provenance_notes", {}).items():
            parts.append(f'<div class="caveat">{html.escape(section)}: produced with settings that differ from the '
                         f'current osd.toml: {html.escape("; ".join(diffs))}</div>')
        d = m.get("osr", {}).get("data", {})
        parts.append(f"<p>known: {html.escape(', '.join(d.get('known', [])))}; "
                     f"unknown: {html.escape(', '.join(d.get('unknown', [])))}</p>")
        for section in ("osr", "cascade", "three_outcome"):
            if section in m:
                parts.append(f"<h3>{section}</h3>")
                parts += _section(m[section])
        if "bench" in m:
            b = m["bench"]
            parts.append(f"<h3>bench ({html.escape(b['device'])}, {b['threads']} threads)</h3>")
            brow = [{"approach": a, "median ms": b[a]["latency"]["median_ms"], "p95 ms": b[a]["latency"]["p95_ms"],
                     "images/s": b[a]["throughput_images_per_s"]} for a in ("one_stage", "two_stage")]
            parts.append(_table(brow, ["approach", "median ms", "p95 ms", "images/s"]))
        parts.append('<div class="plots">' + "".join(_img(p) for p in info["plots"]) + "</div>")
    parts.append("<h2>Current osd.toml (resolved); each result records its own settings under provenance</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(cfg.to_dict(), indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)

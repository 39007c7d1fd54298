"""The report's summary tables as Markdown and LaTeX (a thesis needs them), from the same rows as the page."""

from __future__ import annotations

from pathlib import Path

from osd import artifacts
from osd.types import JsonObject

TITLES = {"headline": "Known and unknown defect classes (defect test images)",
          "three": "Three outcomes: the line's defect and normal test images",
          "beside": "Beside the locked method: variants and baselines"}


def _metrics(rows: list[JsonObject]) -> list[str]:
    return [k.removesuffix("_cell") for k in rows[0] if k.endswith("_cell")] if rows else []


def markdown(tables: dict[str, list[JsonObject]], human: dict[str, str]) -> str:
    out = []
    for key, rows in tables.items():
        if not rows:
            continue
        cols = _metrics(rows)
        out += [f"### {TITLES.get(key, key)}", "",
                "| approach | " + " | ".join(human.get(c, c) for c in cols) + " |",
                "|---|" + "---|" * len(cols)]
        out += ["| " + r["name"] + " | " + " | ".join(r[f"{c}_cell"] for c in cols) + " |" for r in rows]
        out += ["", f"Mean over {rows[0]['runs']} run(s); interval: {rows[0].get('interval') or '-'}.", ""]
    return "\n".join(out)


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("\u2020", r"\dag{}")):
        text = text.replace(a, b)
    return text


def latex(tables: dict[str, list[JsonObject]], human: dict[str, str]) -> str:
    """One ``tabular`` per table (booktabs rules); values as ``0.976 [0.961, 0.989]``."""
    out = ["% osd summary tables; needs \\usepackage{booktabs}"]
    for key, rows in tables.items():
        if not rows:
            continue
        cols = _metrics(rows)
        out += ["\\begin{table}[ht]", "\\centering", "\\small", "\\begin{tabular}{l" + "r" * len(cols) + "}",
                "\\toprule", "approach & " + " & ".join(_tex(human.get(c, c)) for c in cols) + " \\\\", "\\midrule"]
        out += [_tex(r["name"]) + " & " + " & ".join(_tex(r[f"{c}_cell"]) for c in cols) + " \\\\" for r in rows]
        out += ["\\bottomrule", "\\end{tabular}",
                f"\\caption{{{_tex(TITLES.get(key, key))}; mean over {rows[0]['runs']} run(s), "
                f"interval: {_tex(rows[0].get('interval') or '-')}.}}", "\\end{table}", ""]
    return "\n".join(out)


def write_tables(layout: artifacts.Layout, tables: dict[str, list[JsonObject]], human: dict[str, str]
                 ) -> tuple[Path, Path]:
    """``summary.md`` and ``summary.tex`` beside ``summary.csv``."""
    return (artifacts.write_text(layout.summary_md, markdown(tables, human)),
            artifacts.write_text(layout.summary_tex, latex(tables, human)))

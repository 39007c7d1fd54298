"""What the line's commands show: predictions, the monitor's checks and the groups of unknowns."""

from __future__ import annotations

from typing import Any

from osd.cli.render import note, out, show, table
from osd.types import JsonObject

PREDICT_TABLE_ROWS = 30


def show_predictions(rows: list[JsonObject], n: int, unreadable: int, out: Any, models: dict[str, str]) -> None:
    if rows and "one_stage" not in rows[0] and "cascade" not in rows[0] and "closed_class" not in rows[0]:
        show(table(f"Predictions ({n} inputs): detection study", ["path", "decision", "stage 1 score (threshold)"],
                   [[r["path"], r.get("decision") or r.get("reason", ""),
                     f"{r['stage1_score']:.4g} ({r['stage1_threshold']:.4g})" if r.get("stage1_score") is not None
                     else "-"] for r in rows]))
    elif rows:
        show(table(f"Predictions ({n} inputs)", ["path", "one-stage", "distance (tau)", "cascade",
                                                  "stage 1 (threshold)", "max softmax"],
                   [[r["path"], r.get("one_stage") or r.get("reason", ""),
                     f"{r['one_stage_score']:.4g} ({r['tau']:.4g})" if r.get("one_stage_score") is not None else "-",
                     r.get("cascade", "-"),
                     f"{r['stage1_score']:.4g} ({r['stage1_threshold']:.4g})" if r.get("stage1_score") is not None
                     else "-", r.get("msp")] for r in rows]))
    out_text = f"; rows written to {out}" if out else ("" if rows else "; use --out FILE.csv to keep the rows")
    note(f"{n} input(s), {unreadable} unreadable{out_text}; models: "
         + ", ".join(f"{k} {v}" for k, v in models.items()))


def show_monitor(r: Any) -> None:
    """One table: a row per batch and check, the numbers behind each status."""
    def num(v: Any, spec: str = ".3g") -> str:
        return "-" if v is None else format(v, spec)

    if r.charts or r.baseline:
        show_charts(r)
        for msg in r.notes:
            note(msg)
        alarms = [name for name, status in r.statuses.items() if status == "drift"]
        out.print(f"[red]alarm in {len(alarms)} of {len(r.statuses)} batch(es): {', '.join(alarms[:6])}"
                  f"{' ...' if len(alarms) > 6 else ''}[/]" if alarms else
                  f"[green]no alarm in {len(r.statuses)} batch(es)[/]")
        for path in (r.plot, r.page):
            if path:
                note(f"control chart: {path}")
        return
    from osd.monitor import HUMAN

    rows = [[c.batch, HUMAN.get(c.check, c.check), c.n, num(c.statistic), num(c.p_value, ".2g"), num(c.psi, ".3f"),
             "-" if c.observed is None else f"{c.observed:.3f} vs {c.expected:.3f}", c.status] for c in r.checks]
    colour = {"ok": "green", "watch": "yellow", "drift": "red"}
    show(table(f"Monitor: {len(r.statuses)} batch(es) against the {r.source}",
               ["batch", "check", "n", "stat.", "p", "PSI", "share: seen vs allowed", "status"], rows,
               caption=r.rule))
    for msg in r.notes:
        note(msg)
    for name, status in r.statuses.items():
        out.print(f"[{colour.get(status, 'dim')}]{name}: {status}[/]")
    if r.plot:
        note(f"plot: {r.plot}")


def show_charts(r: Any) -> None:
    """With a baseline: a row per batch, a column per statistic (its value, the EWMA against its limit, the
    alarm marked)."""
    from osd.control_chart import HUMAN as CHART_HUMAN

    names = list(dict.fromkeys((p.variant, p.statistic) for p in r.charts))
    cell = {(p.batch, p.variant, p.statistic): p for p in r.charts}

    def shown(p: Any) -> str:
        mark = "[red]ALARM[/] " if p.alarm else ""
        return f"{mark}{p.value:.4g}\nEWMA {p.ewma:+.2f} (±{p.ewma_limit:.2f})"

    rows = [[batch, *(shown(cell[(batch, v, n)]) if (batch, v, n) in cell else "-" for v, n in names),
             "alarm" if status == "drift" else status] for batch, status in r.statuses.items()]
    show(table(f"Monitor: {len(r.statuses)} batch(es), charted against the line's baseline ({r.baseline})",
               ["batch", *(f"{v + ': ' if v else ''}{CHART_HUMAN.get(n, n)}" for v, n in names), "status"], rows,
               caption=r.rule))


def show_baseline(b: Any) -> None:
    import math

    from osd.control_chart import HUMAN as CHART_HUMAN
    from osd.control_chart import SHARES, STATISTICS

    bl = b.baseline

    def mean(name: str, m: float) -> str:  # a share is charted on the arcsine scale; shown as a share
        return f"{math.sin(m) ** 2:.3f}" if name in SHARES else f"{m:.4g}"

    rows = [[v or "(the line)", CHART_HUMAN.get(name, name), mean(name, lim.mean), f"{lim.sd:.3g}", lim.windows]
            for v, per in bl.limits.items() for name, lim in per.items()]
    show(table(f"The line's baseline: {bl.rows} rows in windows of {bl.window}",
               ["variant", "statistic", "mean", "spread (charted scale)", "windows"], rows,
               caption=f"against the {b.source}; kept at {b.path} (sealed; refused if the models are refitted)"))
    for v, per in bl.limits.items():
        missing = [CHART_HUMAN[s] for s in STATISTICS if s not in per]
        if missing:
            note(f"{v or 'the line'}: not charted: {', '.join(missing)} (fewer than 10 windows with 5 images behind "
                 "the statistic, or no stage-1 reference: a larger --window, or more rows)")
    note("from now on osd monitor charts new rows against it (--false-alarm-every sets the rate)")


def show_unknowns(g: Any) -> None:
    show(table(f"Images called unknown: {g.images} in {len(g.groups)} group(s)", ["group", "images", "examples",
                                                                               "contact sheet"],
               [[x.group, x.size, "\n".join(x.examples[:3]), x.contact_sheet] for x in g.groups], caption=g.method))
    note(g.how_to_name)

"""Matplotlib figures (Agg backend) written as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from osd.types import JsonObject


class _Figures:
    """What the plots need of pyplot, from ``matplotlib.figure`` alone: no global backend switch,
    no pyplot state, so a caller's (e.g. a notebook's) matplotlib setup is left as it was."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
        from matplotlib.figure import Figure

        fig = Figure(figsize=kwargs.pop("figsize", None))
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @staticmethod
    def close(fig: Any) -> None:
        pass


def _plt() -> _Figures:
    return _Figures()


def _save(fig, path: Path) -> Path:
    from osd.artifacts import atomic_write

    # through the artifacts' atomic write: no partial PNG, the umask's permissions, one-line errors
    return atomic_write(path, lambda t: fig.savefig(t, dpi=110, bbox_inches="tight", format="png"))


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str,
               axes: tuple[str, str] = ("false positive rate (knowns rejected)",
                                        "true positive rate (unknowns rejected)")) -> Path:
    """curves: name -> (is_unknown, score) with higher score = more unknown."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def histogram(groups: dict[str, np.ndarray], threshold: float | None, path: Path, title: str, xlabel: str,
              lines: dict[str, float] | None = None) -> Path:
    """Score densities per group; ``threshold`` a dashed line, ``lines`` more named thresholds."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    finite = np.concatenate([g[np.isfinite(g)] for g in groups.values() if len(g)])
    bins = np.histogram_bin_edges(finite, bins=40) if finite.size else 10
    for name, g in groups.items():
        ax.hist(g[np.isfinite(g)], bins=bins, alpha=0.55, label=f"{name} (n={len(g)})", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    for (name, x), style in zip((lines or {}).items(), ("--", "-.", ":", (0, (5, 1)))):
        ax.axvline(x, color="k", ls=style, lw=1, label=f"{name}: {x:.3g}")
    ax.set(xlabel=xlabel, ylabel="density", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def confusion(true: Sequence[str], pred: Sequence[str], labels: list[str], path: Path, title: str) -> Path:
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    cm = confusion_matrix(true, pred, labels=labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.7 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def latency_bars(bench: JsonObject, path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    y = 0
    ticks = []
    for approach in ("one_stage", "two_stage"):
        left = 0.0
        for stage, s in bench[approach]["stages"].items():
            ax.barh(y, s["median_ms"], left=left, label=stage if approach == "two_stage" or stage == "mahalanobis"
                    else None)
            left += s["median_ms"]
        ticks.append(approach.replace("_", "-"))
        y += 1
    ax.set_yticks(range(len(ticks)), ticks)
    ax.set(xlabel="median latency per image, batch 1 (ms)", title=title)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def verdict_chart(found: Sequence[Any], path: Path, human: dict[str, str],
                  hidden: dict[str, Sequence[str]] | None = None) -> Path:
    """One panel per metric: splits as rows, each seed a point with its 95% paired bootstrap interval,
    and the split means' t interval (the overall verdict's) as a band at the top; zero marked. With
    ``hidden`` (a complete design): a forest plot, the splits ordered by the first panel's split mean and
    labelled with the classes they hide, the band the interval for the design's mean."""
    plt = _plt()
    n = len(found)
    splits = sorted({r.split for v in found for r in v.runs})
    if hidden:
        means = found[0].split_means
        splits = sorted(splits, key=lambda s: (-means.get(s, float("-inf")), s))
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n + 1.0, 1.3 + 0.55 * (len(splits) + 1)), squeeze=False, sharey=True)
    for j, (ax, v) in enumerate(zip(axes[0], found)):
        seeds = sorted({r.seed for r in v.runs})
        for r in v.runs:
            y = splits.index(r.split) + 1 + (seeds.index(r.seed) - (len(seeds) - 1) / 2) * 0.18
            sig = r.holm_significant
            color = "tab:green" if sig and r.difference > 0 else "tab:red" if sig else "tab:gray"
            if r.ci95:
                ax.plot(r.ci95, [y, y], color=color, lw=1.5)
            ax.plot([r.difference], [y], "o", color=color, ms=5)
        if v.ci95:
            ax.axvspan(*v.ci95, ymin=0, ymax=1, color="tab:blue", alpha=0.08)
            ax.plot(v.ci95, [0, 0], color="tab:blue", lw=3)
        ax.plot([v.mean_difference], [0], "D", color="tab:blue", ms=6)
        ax.axvline(0, color="k", lw=0.8)
        if j == 0:
            names = ([f"hides {', '.join(hidden[s])}" for s in splits] if hidden
                     else [f"split {s.upper()}" for s in splits])
            ax.set_yticks(range(len(splits) + 1), ["mean of all splits" if hidden else "mean of splits", *names],
                          fontsize=8 if hidden else 9)
            ax.invert_yaxis()
        ax.set_title(f"{human.get(v.metric, v.metric)}\n{v.claim}", fontsize=10)
        ax.set_xlabel("one-stage minus cascade", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    band = ("Band: the 95% interval for the mean over every split of the complete design (training and test-image "
            "noise; the splits are all there are).\nRows ordered by the first panel's split mean." if hidden else
            "Band: the verdict's 95% interval over split means (variance at least the seeds' own).")
    fig.suptitle("Points: runs (seeds) with their paired 95% intervals; green / red: significant after Holm.\n"
                 f"{band} The first panel is the primary test, the others secondary.", fontsize=8, y=0.01,
                 va="bottom")
    fig.subplots_adjust(bottom=0.3 if not hidden else 0.12, wspace=0.08)
    return _save(fig, path)


def monitor_chart(checks: Sequence[Any], batch_names: list[str], path: Path) -> Path:
    """Each check's -log10 p-value over the batches, with the watch and drift lines of the first batch's m."""
    from osd.monitor import HUMAN

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    names = list(dict.fromkeys(c.check for c in checks))
    x = {b: i for i, b in enumerate(batch_names)}
    for name in names:
        pts = [(x[c.batch], -np.log10(max(c.p_value, 1e-300))) for c in checks if c.check == name and c.p_value is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=HUMAN.get(name, name))
    m = max(1, sum(c.batch == batch_names[0] and c.p_value is not None for c in checks))
    ax.axhline(-np.log10(0.05 / m), color="orange", ls="--", lw=1, label=f"watch (p < 0.05/{m})")
    ax.axhline(-np.log10(0.01 / m), color="red", ls="--", lw=1, label=f"drift (p < 0.01/{m})")
    ax.set_xticks(range(len(batch_names)), batch_names, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="-log10 p", title="osd monitor: each check over the batches")
    ax.legend(fontsize=7)
    return _save(fig, path)


def control_chart(points: Sequence[Any], path: Path) -> Path:
    """The control chart: a panel per (variant, statistic), its standardised value (dots) and its EWMA
    (line, its limits dotted) over the batches, the alarms marked red."""
    from osd.control_chart import HUMAN

    plt = _plt()
    keys = list(dict.fromkeys((p.variant, p.statistic) for p in points))
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.9 * len(keys) + 0.6), squeeze=False, sharex=False)
    for ax, (variant, stat) in zip(axes[:, 0], keys):
        pts = [p for p in points if (p.variant, p.statistic) == (variant, stat)]
        x = np.arange(len(pts))
        ax.plot(x, [p.z for p in pts], "o", ms=3, color="0.55", label="batch (z)")
        ax.plot(x, [p.ewma for p in pts], "-", color="tab:blue", lw=1.4, label="EWMA")
        ax.plot(x, [p.ewma_limit for p in pts], ":", color="tab:blue", lw=1)
        ax.plot(x, [-p.ewma_limit for p in pts], ":", color="tab:blue", lw=1)
        bad = [i for i, p in enumerate(pts) if p.alarm]
        if bad:
            ax.plot(bad, [pts[i].ewma for i in bad], "x", color="red", ms=8, mew=2, label="alarm")
        ax.set_ylabel("z", fontsize=8)
        ax.set_title(f"{variant + ': ' if variant else ''}{HUMAN.get(stat, stat)}", fontsize=9, loc="left")
        step = max(1, len(pts) // 12)
        ax.set_xticks(x[::step], [pts[i].batch.split(": ")[-1] for i in x[::step]], rotation=25, ha="right",
                      fontsize=6)
    axes[0, 0].legend(fontsize=7, loc="upper left", ncol=3)
    fig.subplots_adjust(hspace=0.95)  # room for each panel's batch labels below it and the next one's title
    fig.suptitle("osd monitor: EWMA charts against the line's baseline (dots: each batch's z; dotted: the "
                 "EWMA's limits)", fontsize=9)
    return _save(fig, path)


def control_chart_page(result: Any, png: Path) -> Path:
    """An HTML page beside the PNG: the rule (the stated rate), the chart, and the alarms in a table."""
    import html

    from osd.artifacts import write_text
    from osd.control_chart import HUMAN

    alarms = [p for p in result.charts if p.alarm]
    rows = "".join(f"<tr><td>{html.escape(p.batch)}</td><td>{html.escape(HUMAN.get(p.statistic, p.statistic))}</td>"
                   f"<td>{p.value:.4g}</td><td>{p.z:+.2f}</td><td>{p.ewma:+.2f}</td><td>{html.escape(p.alarm)}</td></tr>"
                   for p in alarms) or "<tr><td colspan=6>no alarm</td></tr>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>osd monitor</title><style>body{{font-family:"
            f"sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}"
            f"</style></head><body><h1>osd monitor: control charts</h1><p>{html.escape(result.rule)}</p>"
            f"<p>Source: {html.escape(result.source)}; baseline: {html.escape(str(result.baseline))}</p>"
            f"<img src='{html.escape(Path(png).name)}' style='max-width:100%'><h2>Alarms</h2><table><tr><th>batch</th>"
            f"<th>statistic</th><th>value</th><th>z</th><th>EWMA</th><th>chart</th></tr>{rows}</table>"
            f"<ul>{notes}</ul></body></html>\n")
    return write_text(Path(png).with_suffix(".html"), page)

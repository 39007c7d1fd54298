"""``osd report``: metrics.json, summary.csv, plots and report.html from cached artifacts only."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from osd import __version__, artifacts
from osd.config import SPLIT_NAMES, Config
from osd.errors import ArtifactError
from osd.report import plots
from osd.report.html import render_html

SUMMARY_METRICS = ("closed_set_accuracy", "auroc", "fpr_at_95_tpr", "known_acceptance", "unknown_rejection",
                   "open_set_accuracy", "open_set_macro_f1", "oscr")
APPROACHES = {
    "one_stage_mahalanobis": ("osr", None),
    "one_stage_msp": ("osr", "msp"),
    "cascade_strict": ("cascade", "strict"),
    "cascade_ignore_no_defect": ("cascade", "ignore_no_defect"),
}


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _split_plots(layout: artifacts.Layout, name: str, metrics: dict[str, Any], pc_scores: dict[str, Any]) -> list[str]:
    out = layout.plots(name)
    made: list[Path] = []
    osr_rows = _read_csv(layout.osr(name) / "predictions.csv")
    cas_rows = _read_csv(layout.cascade(name) / "predictions.csv")
    if osr_rows:
        y = np.array([r["role"] == "unknown" for r in osr_rows])
        dist = np.array([float(r["distance"]) for r in osr_rows])
        msp = np.array([float(r["msp"]) for r in osr_rows])
        curves = {"one-stage Mahalanobis": (y, dist), "max-softmax": (y, -msp)}
        if cas_rows:
            yc = np.array([r["role"] == "unknown" for r in cas_rows])
            curves["cascade stage 2 (max-softmax)"] = (yc, -np.array([float(r["msp"]) for r in cas_rows]))
        made.append(plots.roc_curves(curves, out / "roc.png", f"Split {name.upper()}: known vs unknown"))
        tau = metrics.get("osr", {}).get("tau")
        made.append(plots.histogram({"known": dist[~y], "unknown": dist[y]}, tau, out / "distance_hist.png",
                                    f"Split {name.upper()}: Mahalanobis distance", "squared distance (higher = unknown)"))
        labels = sorted({r["true_label"] for r in osr_rows if r["role"] == "known"}) + ["unknown"]
        true = [r["true_label"] if r["role"] == "known" else "unknown" for r in osr_rows]
        made.append(plots.confusion(true, [r["pred_label"] for r in osr_rows], labels, out / "confusion_one_stage.png",
                                    f"Split {name.upper()}: one-stage (K+1)"))
    if cas_rows:
        labels = sorted({r["true_label"] for r in cas_rows if r["role"] == "known"}) + ["unknown", "no_defect"]
        true = [r["true_label"] if r["role"] == "known" else "unknown" for r in cas_rows]
        for mode in ("strict", "ignore_no_defect"):
            made.append(plots.confusion(true, [r[f"pred_{mode}"] for r in cas_rows], labels,
                                        out / f"confusion_cascade_{mode}.png", f"Split {name.upper()}: cascade {mode}"))
        s1 = np.array([float(r["stage1_score"]) for r in cas_rows])
        groups = {"Severstal test normals (crops)": np.asarray(pc_scores.get("test", []), dtype=float),
                  "NEU known test": s1[[r["role"] == "known" for r in cas_rows]],
                  "NEU unknown test": s1[[r["role"] == "unknown" for r in cas_rows]]}
        made.append(plots.histogram(groups, pc_scores.get("threshold"), out / "patchcore_scores.png",
                                    f"Split {name.upper()}: PatchCore scores", "patch distance (higher = anomalous)"))
    bench = artifacts.read_json(layout.bench(name))
    if bench.get("one_stage"):
        made.append(plots.latency_bars(bench, out / "latency.png", f"Split {name.upper()}: latency by stage"))
    return [str(p) for p in made]


def build_report(cfg: Config, splits: list[str] | None = None) -> dict[str, Any]:
    """Rebuild every report file from what is on disk; raise ArtifactError when nothing has been run."""
    from osd.models.backbones import describe_weights

    layout = artifacts.Layout(cfg.output_dir)
    names = [s for s in (splits or SPLIT_NAMES) if layout.metrics(s).is_file()]
    if not names:
        raise ArtifactError(f"{layout.root}: no results yet; run `osd osr --split a` or `osd run-all` first")
    pc_scores = artifacts.read_json(layout.patchcore / "scores.json")
    pc_stats = artifacts.read_json(layout.patchcore / "fit_stats.json")
    rows: list[dict[str, Any]] = []
    per_split: dict[str, Any] = {}
    weights = {"classifier": describe_weights(cfg.classifier.weights), "patchcore": describe_weights(cfg.patchcore.weights)}
    for name in names:
        m = artifacts.read_json(layout.metrics(name))
        manifest = _read_csv(layout.manifest(name))
        counts: dict[str, dict[str, int]] = {}
        for r in manifest:
            counts.setdefault(r["class"], {}).setdefault(r["partition"], 0)
            counts[r["class"]][r["partition"]] += 1
        m["data"] = {"counts": counts, "known": cfg.split(name).known, "unknown": cfg.split(name).unknown}
        m["thresholds"] = {
            "osr": artifacts.read_json(layout.osr(name) / "thresholds.json"),
            "patchcore": artifacts.read_json(layout.patchcore / "threshold.json"),
        }
        m["weights"] = weights
        m["config"] = cfg.to_dict()
        m["osd_version"] = __version__
        artifacts.write_json(layout.metrics(name), m)
        history = artifacts.read_json(layout.classifier(name) / "history.json")
        train_s = history[-1]["seconds"] if isinstance(history, list) and history else None
        for approach, (section, sub) in APPROACHES.items():
            block = m.get(section, {})
            block = block.get(sub, {}) if sub else block
            if not block:
                continue
            row = {"split": name, "approach": approach, **{k: block.get(k) for k in SUMMARY_METRICS}}
            row["train_seconds"] = train_s if section == "osr" else None
            rows.append(row)
        plot_files = _split_plots(layout, name, m, pc_scores)
        per_split[name] = {"metrics": m, "plots": plot_files}
    # mean and standard deviation over the splits, per approach
    for approach in APPROACHES:
        sel = [r for r in rows if r["approach"] == approach and r["split"] in names]
        if len(sel) < 1:
            continue
        for stat, fn in (("mean", np.mean), ("std", np.std)):
            row = {"split": stat, "approach": approach}
            for k in SUMMARY_METRICS:
                vals = [r[k] for r in sel if r.get(k) is not None]
                row[k] = float(fn(vals)) if vals else None
            row["train_seconds"] = None
            rows.append(row)
    buf = io.StringIO()
    cols = ["split", "approach", *SUMMARY_METRICS, "train_seconds"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]))
                    for k in cols})
    summary = artifacts.write_text(layout.root / "summary.csv", buf.getvalue())
    caveats = [
        f"Classifier weights: {weights['classifier']}; PatchCore weights: {weights['patchcore']}. "
        "With 'none' (random init) PatchCore features carry little anomaly signal.",
        "Stage 1 is cross-domain: PatchCore is fitted on Severstal normal crops and applied to NEU images. "
        "NEU has no normal images, so 'strict' mode counts every stage-1 'normal' call on NEU as an error.",
        "Thresholds were set on known validation images (tau, kappa) and calibration normals (PatchCore), "
        "never on test data.",
    ]
    if "SYNTHETIC" in _project_header(cfg):
        caveats.insert(0, "DEMO: the data is synthetic (osd init --demo). The numbers show that the pipeline "
                          "runs, nothing about real steel.")
    html = render_html(cfg, rows, per_split, pc_stats, caveats)
    report = artifacts.write_text(layout.root / "report.html", html)
    return {"summary_csv": str(summary), "report_html": str(report), "rows": rows, "splits": names,
            "caveats": caveats, "plots": {k: v["plots"] for k, v in per_split.items()}}


def _project_header(cfg: Config) -> str:
    p = cfg.base_dir / "osd.toml"
    try:
        return p.read_text(encoding="utf-8")[:400]
    except OSError:
        return ""

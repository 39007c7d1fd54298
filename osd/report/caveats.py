"""The report's caveats: the weights, the data and its domain, how thresholds and intervals were made,
how the epoch was chosen, and settings that changed since a result was made, all read from the results."""

from __future__ import annotations

from typing import Any

from osd.config import Config
from osd.report.answer import RunPage


def data_caveat(cfg: Config) -> str:
    """What stage 1 was fitted on and applied to, from the configured data (never a fixed sentence)."""
    known = f"the known and unknown classes from {cfg.neu.root}"
    if cfg.normal.severstal_root:
        normal = f"Severstal's defect-free strips ({cfg.normal.severstal_root})"
    elif cfg.normal.folder:
        normal = f"the normal images in {cfg.normal.folder}"
    else:
        return f"No normal images are configured: only the one-stage approach ran, on {known}."
    if cfg.normal.in_domain:
        return (f"In-domain (normal.in_domain = true): stage 1 (PatchCore) is fitted on {normal}, of the same line as "
                f"{known}. The held-out normal images join every split's test set, so each approach is also judged "
                "on good parts (three outcomes: no_defect, a known class, unknown). The locked one-stage method has "
                "no no_defect answer: every normal test image counts against it there; the variant with normal as "
                "a known class is reported beside it. The known/unknown tables are over the defect images only.")
    return (f"Cross-domain: stage 1 (PatchCore) is fitted on {normal} and applied to {known}. The test images are "
            "all defect images, so 'strict' mode counts every stage-1 'normal' call on them as an error.")


def caveats(cfg: Config, weights: dict[str, set[str]], selection: set[Any], chosen: list[tuple[str, str]],
             pages: dict[str, RunPage]) -> list[str]:
    wdesc = {k: ", ".join(sorted(v_)) or "unknown" for k, v_ in weights.items()}
    caveats = [
        f"Weights that produced these numbers (from each result's provenance): classifier {wdesc['classifier']}; "
        f"PatchCore {wdesc['patchcore']}. With 'none' (random init) PatchCore features carry little anomaly signal.",
        data_caveat(cfg),
        "Thresholds were set on known validation images (tau, kappa) and calibration normals (PatchCore), "
        "never on test data. A run's intervals are 95% intervals over its test images: a single rate (accuracy, "
        "acceptance, rejection, pass or detection rate) exact Clopper-Pearson, which keeps its coverage at 0 and 1; "
        "AUROC exact at a perfect separation ([0.025^(1/min(m, n)), 1]) and Newcombe's score interval otherwise; "
        "FPR@95, whose threshold the same test knowns set, Clopper-Pearson at the stratified bootstrap's effective "
        "sample size (the threshold's noise included); AUPR, OSCR and macro-F1 a stratified bootstrap (none shown "
        "where every replicate is equal: resampling cannot bound it); a difference between approaches "
        "the paired bootstrap. Over several splits: a t interval over the split means (seeds averaged within their "
        "split first), its variance at least the seeds' own, within the metric's range; a value the same in every "
        "split is shown once with its own interval. The splits share their known classes' test images: a claim "
        "over splits is about these splits of this data set.",
        selection_caveat(selection),
    ]
    if chosen:
        grouped: dict[str, list[str]] = {}
        for run, what in chosen:
            grouped.setdefault(what, []).append(run)
        caveats.append("Feature variant chosen without test data (pseudo-open-set on the known classes' training and "
                       "validation images, mean AUROC; reported only, the headline stays the locked method): "
                       + "; ".join(f"{', '.join(r)}: {w}" for w, r in grouped.items())
                       + ". Caveat: only the Mahalanobis head is refitted without the held-out "
                       "class; the backbone was trained on it, so its pseudo-unknowns are not unseen by the features "
                       "and the scores are optimistic (they saturate near 1 when the features separate the classes).")
    for n, page in pages.items():
        for section, diffs in page.provenance_notes.items():
            caveats.append(f"Split {n} {section}: produced with settings that differ from the current "
                           f"osd.toml: {'; '.join(diffs[:6])}{' ...' if len(diffs) > 6 else ''}. "
                           "The numbers are shown as produced; rerun the step to update them.")
    if "SYNTHETIC" in project_header(cfg):
        caveats.insert(0, "DEMO: the data is synthetic (osd init --demo). The numbers show that the pipeline "
                          "runs, nothing about real steel.")
    return caveats


def selection_caveat(fractions: set[Any]) -> str:
    """How the classifier's epoch was chosen, as the runs recorded it (not as osd.toml says now)."""
    words = []
    for f in sorted(fractions, key=str):
        if f is None:
            words.append("not recorded (an earlier osd: the epoch was chosen on the same validation images that "
                         "set tau and kappa, which can make them optimistic)")
        elif float(f) == 0:
            words.append("0 (the last epoch was kept; all validation images set tau and kappa)")
        else:
            words.append(f"{f} (that share of the validation images chose the epoch; the rest, which no choice "
                         "had seen, set tau and kappa)")
    return "Epoch selection, splits.selection_fraction: " + "; ".join(words or ["no one-stage results"]) + "."


def weights_name(w: Any) -> str:
    if not isinstance(w, dict):
        return str(w)
    if w.get("kind") == "file":
        return f"file {w.get('name')} (sha256 {str(w.get('sha256'))[:12]})"
    return str(w.get("kind")) + (f" ({w['source']})" if w.get("source") else "")


def project_header(cfg: Config) -> str:
    from osd.config import PROJECT_FILE

    p = cfg.base_dir / PROJECT_FILE
    try:
        return p.read_text(encoding="utf-8")[:400]
    except OSError:
        return ""

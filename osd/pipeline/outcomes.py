"""Step ``outcomes``: the three-outcome study of a line with its own normal images (``normal.in_domain``).

Every test image of the split (known classes, unknown classes, and the held-out normal images) gets
an answer from each approach, by the rules of :mod:`osd.decide` and on the arrays the other steps
cached (one unit and preprocessing with ``predict``):

- ``one_stage``: the locked method as it is. It has no ``no_defect`` answer: a normal image is
  either accepted as a known class or flagged unknown, and both are errors for a good part.
- ``cascade_strict`` / ``cascade_ignore_no_defect``: stage 1 (PatchCore) then stage 2.
- ``one_stage_normal_class``: the variant a practitioner would build, the classifier of the split
  ``x+normal`` that learned the normal images as one more known class (``no_defect``), with its own
  tau on its validation images. Reported beside the locked method, never replacing it.

Thresholds stay on non-test data: tau and kappa on known validation images, the PatchCore threshold
on calibration normals. Metrics: :mod:`osd.three_outcome`, each with stratified bootstrap intervals
(known / unknown / normal drawn within themselves), the paired differences one-stage minus cascade,
and stage 1's image-level AUROC (defect test images against normal test images).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from osd import artifacts, decide
from osd.config import NORMAL_CLASS_SUFFIX
from osd.errors import ConfigError, OsdWarning
from osd.metrics import paired_difference
from osd.osr.embeddings import NORMAL_PART, Embeddings
from osd.osr.model import part_matrix
from osd.pipeline.job import Job
from osd.progress import Reporter, ensure
from osd.records import OutcomesResult, Rows, cached_sections
from osd.three_outcome import METRICS, NORMAL, ThreeOutcome, image_auroc, image_auroc_interval, kinds, true_outcomes

if TYPE_CHECKING:
    from osd.pipeline.detector import Stage1FitRecord

# 3: the payload is the OutcomesResult record; 2: per-run p-values from the paired bootstrap replicates
# 5: no zero-width bootstrap interval (the stage-1 AUROC of a perfect separation has none); 4: exact intervals
# of the rates, the stage-1 AUROC per image
OUTCOMES_ALGORITHM = "three-outcome/6"  # 6: stage-1 AUROC interval at its edges; balanced accuracy (the lead)
APPROACHES = {
    "one_stage": "locked one-stage (penultimate Mahalanobis): no no_defect answer",
    "cascade_strict": "cascade, strict: stage 1's no_defect kept",
    "cascade_ignore_no_defect": "cascade, ignore_no_defect: stage 2 answers every image",
    "one_stage_normal_class": "variant: one-stage with normal images as one more known class (split x+normal); "
                              "reported beside the locked method, never used to choose it",
}
VERSUS = (("one_stage", "cascade_strict"), ("one_stage", "cascade_ignore_no_defect"),
          ("one_stage_normal_class", "cascade_strict"))


ByPath = dict[str, tuple[str, str, np.ndarray, np.ndarray]]  # path -> (role, label, logits, scorer input)


def _arrays(emb: Embeddings, blocks: list[str]) -> ByPath:
    """Known, unknown and normal test images of one embeddings artifact, keyed by path."""
    out: ByPath = {}
    for part, role in (("test_known", "known"), ("test_unknown", "unknown"), (NORMAL_PART, "normal")):
        if part not in emb or not len(emb[part]):
            continue
        p = emb[part]
        x = part_matrix(p, blocks)
        for i, path in enumerate(p.paths):
            out[path] = (role, p.labels[i], p.logits[i], x[i])
    return out


def _decisions(cal: artifacts.Step, emb: artifacts.Step, paths: list[str], by_path: ByPath
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(one-stage answers, closed-set answers, max softmax, distance, classes) of ``paths``."""
    classes = Embeddings.from_payload(emb.payload).classes
    logits = np.stack([by_path[p][2] for p in paths])
    x = np.stack([by_path[p][3] for p in paths])
    closed, msp = decide.closed_set(logits, classes)
    dist = cal.payload["scorer"].score_samples(x)
    return decide.one_stage(dist, cal.payload["tau"].threshold_, closed), closed, msp, dist, classes


def _common(tables: list[ByPath], stage1: dict[str, float], split: str) -> tuple[list[str], dict[str, str]]:
    """The test images every source has, in the locked arrays' order; the others named, with a warning."""
    first = tables[0]
    keep, missing = [], {}
    for p in first:
        if all(p in t for t in tables[1:]) and p in stage1:
            keep.append(p)
        else:
            missing[p] = "missing from an upstream step (unreadable there)"
    if missing:
        warnings.warn(f"outcomes, split {split}: {len(missing)} test image(s) left out (no answer from every "
                      "approach): " + ", ".join(list(missing)[:3]), OsdWarning, stacklevel=3)
    return keep, missing


def _rows(job: Job, paths: list[str], roles: list[str], labels: list[str], stage1: np.ndarray,
          dist: np.ndarray, msp: np.ndarray, preds: dict[str, np.ndarray]) -> Rows:
    cfg = job.cfg
    root = cfg.path(cfg.neu.root)
    return Rows.of(("path", "true_label", "role", "stage1_score", "distance", "msp", *APPROACHES),
                   ([str(root / p), labels[i], roles[i], float(stage1[i]), float(dist[i]), float(msp[i]),
                     *(preds[a][i] for a in APPROACHES)] for i, p in enumerate(paths)))


@dataclass(frozen=True)
class Upstream:
    """What the study reads: the stage-1 fit, the split's and its normal-class variant's calibration
    and embeddings, the split's stage-1 scores."""

    fit: Stage1FitRecord
    cal: artifacts.Step
    emb: artifacts.Step
    vcal: artifacts.Step
    vemb: artifacts.Step
    s1: artifacts.Step

    def ids(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name).id for f in fields(self)}


def _evaluate(job: Job, split: str, steps: Upstream, key: str) -> tuple[dict[str, Any], artifacts.Provenance]:
    cfg = job.cfg
    fit, cal, emb, vcal, vemb, s1 = steps.fit, steps.cal, steps.emb, steps.vcal, steps.vemb, steps.s1
    base = _arrays(Embeddings.from_payload(emb.payload), list(cal.payload["blocks"]))
    variant = _arrays(Embeddings.from_payload(vemb.payload), list(vcal.payload["blocks"]))
    scores = dict(s1.payload["scores"])
    paths, missing = _common([base, variant], scores, split)
    roles = [base[p][0] for p in paths]
    kind = kinds(roles)
    if not (kind == NORMAL).any():
        raise ConfigError(f"split {split}: no normal test images reached the study (normal.in_domain = true, but "
                          "every held-out normal image was unreadable or none was held out: see osd data check)")
    labels = [str(base[p][1]) for p in paths]
    true = true_outcomes(labels, kind)
    one, closed, msp, dist, classes = _decisions(cal, emb, paths, base)
    v_one, *_ = _decisions(vcal, vemb, paths, variant)
    stage1 = np.array([scores[p] for p in paths], dtype=np.float64)
    kappa = -cal.payload["neg_kappa"].threshold_ if cfg.cascade.use_kappa else None
    casc = decide.cascade(stage1, fit.threshold, closed, msp, kappa)
    preds = {"one_stage": one, "cascade_strict": casc["strict"], "cascade_ignore_no_defect": casc["ignore_no_defect"],
             "one_stage_normal_class": v_one}
    enc = {a: ThreeOutcome(true, preds[a], kind, classes) for a in APPROACHES}
    n_boot, seed = cfg.stats.bootstrap, cfg.project.seed
    everyone = np.arange(len(paths))
    approaches = {}
    approaches = {a: {**enc[a].metrics(everyone), "intervals95": enc[a].intervals(n_boot, seed),
                      "normal_images_answered": enc[a].normal_calls(), "role": role} for a, role in APPROACHES.items()}
    stage1_auroc = {"auroc": image_auroc(kind != NORMAL, stage1), "ci95": image_auroc_interval(kind, stage1, n_boot, seed),
                    "unit": "image (an about-square image is one crop; a long one its crops' largest score)",
                    "positive": "defect test images (known and unknown classes)", "negative": "normal test images",
                    "score": "PatchCore: largest nearest-neighbour patch distance (higher = more anomalous)"}
    versus = {f"{a}_minus_{b}": paired_difference(enc[a], enc[b], METRICS, kind, n_boot, seed) for a, b in VERSUS}
    counts = {r: int(np.sum(kind == i)) for i, r in enumerate(("known", "unknown", "normal"))}
    prov = artifacts.provenance(cfg, "outcomes", OUTCOMES_ALGORITHM, key,
                                ("classifier", "splits", "osr", "normal", "patchcore", "cascade", "stats",
                                 "project.seed"),
                                steps.ids(), split=split)
    thresholds = {"tau": cal.payload["tau"].threshold_, "kappa": kappa, "patchcore": fit.threshold,
                  "tau_normal_class": vcal.payload["tau"].threshold_,
                  # stage 1's calibration size: how much a seed's pass rate varies with its fit (the report's
                  # interval over seeds for the procedure's pass rate)
                  "patchcore_calibration_n": fit.threshold_summary.get("n")}
    record = OutcomesResult(split, approaches, stage1_auroc, versus, counts, missing, thresholds,
                            cfg.normal.folder or cfg.normal.severstal_root, prov,
                            _rows(job, paths, roles, labels, stage1, dist, msp, preds))
    return record.payload(), prov


def three_outcomes(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> OutcomesResult:
    """Every approach's answer (no_defect, a class, unknown) on the split's known, unknown and normal
    test images, the three-outcome metrics with intervals, and the paired verdict; a cached step."""
    from osd.pipeline.cascade import stage1_step
    from osd.pipeline.detector import stage1_fit
    from osd.pipeline.osr import calibrated
    from osd.pipeline.train import embedded

    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split).removesuffix(NORMAL_CLASS_SUFFIX)
    if not cfg.normal.in_domain:
        raise ConfigError("the three-outcome study needs normal images of the defects' line: set normal.in_domain = "
                          "true and normal.folder to defect-free images of the same line")
    steps = Upstream(stage1_fit(job, reporter=reporter), calibrated(job, split, reporter=reporter),
                     embedded(job, split, reporter=reporter),
                     calibrated(job, split + NORMAL_CLASS_SUFFIX, reporter=reporter),
                     embedded(job, split + NORMAL_CLASS_SUFFIX, reporter=reporter),
                     stage1_step(job, split, reporter=reporter))
    key = artifacts.cache_key("three-outcome", OUTCOMES_ALGORITHM, *steps.ids().values(), cfg.section("cascade"),
                              cfg.section("stats"), cfg.project.seed, str(cfg.path(cfg.neu.root)))
    layout = job.layout
    step = artifacts.cached_step(layout.outcomes_evaluation(split), key, lambda: _evaluate(job, split, steps, key),
                                 force=force, on_wait=reporter.note)
    pred_path, metrics_path = layout.outcomes_predictions(split), layout.metrics(split)
    record = OutcomesResult.from_payload(step.payload, cached=step.cached, predictions=str(pred_path),
                                         metrics_path=str(metrics_path))
    artifacts.write_outputs(pred_path, record.rows.csv(), metrics_path, "three_outcome", record.section(),
                            others=lambda: cached_sections(layout, split))
    return record

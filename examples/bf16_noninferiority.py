"""Is bf16 training non-inferior to fp32? The test that decides what ``project.precision = auto``
trains in (docs/reference.md, "Precision").

    python examples/bf16_noninferiority.py PROJECT_DIR [--splits a,b,c] [--seeds 0,1,2] [--margin 0.01]
        [--set KEY=VALUE ...] [--json OUT]

For every split and seed the classifier is trained twice, in fp32 and in bf16 (the same images,
seed and settings; each precision in its own output folder, so both stay cached), and scored on
**validation data only**, never on test images:

- closed-set accuracy on the known validation images that set tau (the epoch-selection share chose
  the epoch, so it is left out);
- the pseudo-open-set AUROC on them (leave one known class out: osd's variant-selection score of
  the locked penultimate features, :func:`osd.osr.model.select_variant`).

Both networks' embeddings are scored in fp32 (``Compute.scoring``): only the training differs.
The paired difference bf16 minus fp32 of each (split, seed) is averaged within its split, then a
one-sided 95% t bound over the split means, its variance floored by the seeds' own noise (the
study's own rule, :func:`osd.verdict.split_level_interval`, at the 90% two-sided level). bf16 is
**non-inferior** on a metric when that lower bound lies above -margin; ``auto`` may train in bf16
only when it is non-inferior on both metrics, on NEU and on the harder setting (fewer training
images: ``--set splits.train_fraction=0.15``; with one split, the bound is the t bound over its
seeds). The fp32 arm lives in the project's own outputs, so the classifiers ``osd run-all --seeds
0,1 --set classifier.epochs=6`` trained are reused with ``--set classifier.epochs=6`` here.

A setting counts only where it can see the margin: a metric whose fp32 mean on the validation images
is above 1 - 2 x margin (0.98) sits at its ceiling, where a loss of the margin in bf16 would hardly
show (NEU's validation accuracy is 1.000 in both precisions): the verdict is then "not informative",
and a setting that is not informative cannot let ``auto`` train in bf16. ``--from-json OUT`` decides
again from a run's saved pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from osd import config
from osd.pipeline.job import Job
from osd.verdict import non_inferiority

METRICS = ("closed_set_accuracy_val", "pseudo_open_set_auroc_val")


def validation_scores(cfg: config.Config, split: str) -> dict[str, float]:
    """The two validation metrics of the split's classifier under ``cfg`` (trained and embedded if needed)."""
    from osd.decide import closed_set
    from osd.osr.embeddings import Embeddings
    from osd.osr.model import select_variant
    from osd.pipeline.train import embedded

    emb = Embeddings.from_payload(embedded(Job.of(cfg), split).payload)
    val = emb.threshold  # the validation share that sets tau (the epoch-selection share chose the epoch)
    closed, _ = closed_set(val.logits, emb.classes)
    labels = list(val.labels)
    auroc = select_variant(emb, cfg.osr.covariance, cfg.osr.normalize).to_dict()["validation_auroc"]["penultimate"]
    return {"closed_set_accuracy_val": float(np.mean(np.asarray(closed) == np.asarray(labels))),
            "pseudo_open_set_auroc_val": float(auroc)}


def decide(runs: list[dict], margin: float) -> dict[str, dict]:
    """Per metric: the split means of bf16 minus fp32, the one-sided 95% lower bound and the verdict
    (:func:`osd.verdict.non_inferiority`, the project's rule)."""
    out = {}
    for m in METRICS:
        by_split: dict[str, list[float]] = {}
        for r in runs:
            by_split.setdefault(r["split"], []).append(r["bf16"][m] - r["fp32"][m])
        v = non_inferiority(by_split, [r["fp32"][m] for r in runs], margin)
        out[m] = {"mean_difference": v.mean_difference, "one_sided_95_lower": v.lower, "margin": margin,
                  "split_means": {s: float(np.mean(d)) for s, d in by_split.items()}, "fp32_mean": v.reference_mean,
                  "non_inferior": v.non_inferior, "informative": v.informative,
                  "verdict": v.verdict.replace("the reference at its ceiling", "fp32 at its ceiling")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--splits", default="a,b,c")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-json", type=Path, help="decide again from the pairs a run saved (--json)")
    a = ap.parse_args()
    if a.from_json:
        saved = json.loads(a.from_json.read_text())
        report(saved["runs"], a.margin, saved.get("overrides", {}), a.json)
        return
    base = config.load(a.project)
    overrides = dict(config.parse_override(o) for o in a.overrides)
    runs = []
    for split in a.splits.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            run = {"split": split, "seed": seed}
            for precision in ("fp32", "bf16"):
                # fp32 in the project's own outputs (what run-all trains under auto: its classifiers are reused),
                # bf16 beside them; a changed setting (the harder setting) gets folders of its own
                tag = "_".join(f"{k}-{v}" for k, v in sorted(overrides.items()) if k != "classifier.epochs")
                sub = [f"noninferiority_{tag}"] if tag else []
                sub += ["bf16"] if precision == "bf16" else []
                out = Path(base.project.output_dir, *sub)
                cfg = base.replace(**overrides, **{"project.precision": precision, "project.output_dir": str(out)})
                run[precision] = validation_scores(cfg.for_seed(seed), split)
            runs.append(run)
            print(json.dumps(run), flush=True)
    report(runs, a.margin, overrides, a.json)


def report(runs: list[dict], margin: float, overrides: dict, out: Path | None) -> None:
    verdict = decide(runs, margin)
    for m, v in verdict.items():
        print(f"{m}: bf16 minus fp32 {v['mean_difference']:+.4f}, one-sided 95% lower bound "
              f"{v['one_sided_95_lower']:+.4f} against -{margin} (fp32 mean {v['fp32_mean']:.4f}): {v['verdict']}")
    if out:
        out.write_text(json.dumps({"runs": runs, "verdict": verdict, "overrides": overrides}, indent=2))


if __name__ == "__main__":
    main()

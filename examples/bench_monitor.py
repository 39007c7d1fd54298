"""How often does ``osd monitor`` flag a change, and how often a batch with none? (issue 42)

    python examples/bench_monitor.py PROJECT [--split a] [--sizes 25,50,100] [--reps 40] [--json OUT]

On a project whose study ran (``osd run-all``), the split's known **test** images stand for the line
as the study saw it (no drift; the reference is the validation images and the held-out normals, never
these). Each is predicted once as it is and once per controlled change (brightness -20%, a Gaussian
blur, Gaussian noise, a camera shift of 8% of the side); the split's unknown classes are mixed in at
5% and 20% of a batch. Batches of each size are drawn at random (``--reps`` per size and change) and
checked against the project's reference (:func:`osd.pipeline.monitor.project_reference`), then:

- **false alarms**: the share of no-drift batches whose status is ``drift`` (target <= 1%) or at
  least ``watch`` (<= 5%), by construction of the Bonferroni rule;
- **power**: the share of changed batches flagged ``drift``, per check and overall;
- **unknown groups**: the adjusted Rand index of ``osd monitor --unknowns``'s groups of the split's
  unknown test images against their true classes.

Everything goes through the library's own calls (``Project.predictor``, ``check_batch``,
``choose_groups``); nothing is tuned on the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

import osd
from osd.monitor import DRIFT, WATCH, batch_status, check_batch
from osd.pipeline.job import Job

CHANGES = {
    "none": lambda im, rng: im,
    "brightness -20%": lambda im, rng: ImageEnhance.Brightness(im).enhance(0.8),
    "blur (radius 2)": lambda im, rng: im.filter(ImageFilter.GaussianBlur(2)),
    "noise (sd 12)": lambda im, rng: Image.fromarray(
        np.clip(np.asarray(im, float) + rng.normal(0, 12, np.asarray(im).shape), 0, 255).astype(np.uint8)),
    "camera shift 8%": lambda im, rng: im.transform(im.size, Image.AFFINE,
                                                     (1, 0, int(0.08 * im.size[0]), 0, 1, int(0.08 * im.size[1]))),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--split", default="a")
    ap.add_argument("--sizes", default="25,50,100")
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--set", action="append", default=[], dest="settings")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from osd.data.images import load_rgb
    from osd.pipeline.monitor import project_reference
    from osd.pipeline.unknowns import choose_groups, embed_images

    project = osd.Project(a.project, a.settings)
    cfg = project.config
    ref = project_reference(Job.of(cfg), a.split)
    test = Job.of(cfg).manifest(a.split).test()
    known = [e.path for e in test if e.role == "known"]
    unknown = [e for e in test if e.role == "unknown"]
    predictor = project.predictor(a.split, "both" if ref.stage1_normal is not None else "one-stage")
    rng = np.random.default_rng(0)
    rows = {}
    for name, change in CHANGES.items():
        imgs = [change(load_rgb(p), rng) for p in known]
        rows[name] = list(predictor.predict(imgs))
    rows_unknown = list(predictor.predict([load_rgb(e.path) for e in unknown]))
    sizes = [int(s) for s in a.sizes.split(",")]
    out: dict[str, dict] = {}
    for name in [*CHANGES, "unknowns 5%", "unknowns 20%"]:
        for size in sizes:
            flagged, watched, per_check = 0, 0, {}
            for _ in range(a.reps):
                if name.startswith("unknowns"):
                    k = max(1, round(size * (0.05 if "5%" in name else 0.20)))
                    pick = [rows["none"][i] for i in rng.choice(len(known), size - k, replace=False)]
                    pick += [rows_unknown[i] for i in rng.choice(len(rows_unknown), k, replace=False)]
                else:
                    pick = [rows[name][i] for i in rng.choice(len(known), size, replace=size > len(known))]
                checks = check_batch("b", pick, ref)
                status = batch_status(checks)
                flagged += status == DRIFT
                watched += status in (DRIFT, WATCH)
                for c in checks:
                    per_check[c.check] = per_check.get(c.check, 0) + (c.status == DRIFT)
            out[f"{name} | {size}"] = {"change": name, "batch": size, "reps": a.reps, "drift": flagged / a.reps,
                                       "watch_or_drift": watched / a.reps,
                                       "per_check_drift": {k: v / a.reps for k, v in per_check.items()}}
            print(f"{name:18s} batch {size:4d}: drift {flagged / a.reps:.2f}, watch or drift {watched / a.reps:.2f}; "
                  + ", ".join(f"{k} {v / a.reps:.2f}" for k, v in per_check.items()), flush=True)
    from sklearn.metrics import adjusted_rand_score

    x = embed_images(Job.of(cfg), a.split, [e.path for e in unknown])
    labels, _ = choose_groups(x)
    ari = float(adjusted_rand_score([e.label for e in unknown], labels))
    print(f"unknown groups: {len(set(labels))} for {len(set(e.label for e in unknown))} true unknown classes "
          f"({len(unknown)} images), adjusted Rand index {ari:.3f}")
    if a.json:
        a.json.write_text(json.dumps({"rates": out, "unknown_groups_ari": ari, "groups": int(len(set(labels)))},
                                     indent=2))


if __name__ == "__main__":
    main()

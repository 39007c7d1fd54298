"""How often does ``osd monitor`` flag a change, and how often a batch with none? (issue 42)

    python examples/bench_monitor.py PROJECT [--split a] [--pools a:0,b:0,c:0] [--sizes 25,50,100]
        [--reps 40] [--set KEY=VALUE ...] [--json OUT]

On a project whose study ran (``osd run-all``), the split's known **test** images stand for the line
as the study saw it (no drift; the reference is the validation images and the held-out normals, never
these). Each is predicted once as it is and once per controlled change (brightness -20%, a Gaussian
blur, Gaussian noise, a camera shift of 8% of the side); the split's unknown classes are mixed in at
5% and 20% of a batch. Batches of each size are drawn at random (``--reps`` per size and change) and
checked against the project's reference (:func:`osd.pipeline.monitor.project_reference`), then:

- **power**: the share of changed batches flagged ``drift``, per check and overall (``--split``);
- **false alarms against the study's reference**, on every pool of ``--pools`` (``split:seed``: each
  its own classifier, tau, reference and test images, so the pools are independent draws of what a
  user would see): the share of no-drift batches whose status is ``drift`` (target <= 1%) or at
  least ``watch`` (<= 5%). Batches of one pool share its test images, so one pool that differs from its
  reference by chance flags many of them: the mean over pools is the estimate, the spread says how
  much one pool can mislead;
- **false alarms under exchangeability** (the level of the tests themselves): per repetition, the
  pool's known validation and known test images are shuffled together and cut into a reference of
  the validation set's size and a disjoint batch (tau stays the study's; the reference's acceptance
  interval, class mix and distances come from the drawn reference). With stage 1 checked (a line's own
  good parts) its held-out normals are cut the same way for batches of good parts;
- **unknown groups**: the adjusted Rand index of ``osd monitor --unknowns``'s groups of the split's
  unknown test images against their true classes.

Everything goes through the library's own calls (``Predictor``, ``check_batch``, ``choose_groups``);
nothing is tuned on the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

import osd
from osd.monitor import DRIFT, WATCH, Reference, batch_status, check_batch
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


def rates(batches: list[list[dict]], ref: Reference) -> tuple[float, float, dict[str, float]]:
    """(drift share, watch-or-drift share, per check drift share) of the batches against ``ref``."""
    statuses, per_check = [], {}
    for rows in batches:
        checks = check_batch("b", rows, ref)
        statuses.append(batch_status(checks))
        for c in checks:
            per_check[c.check] = per_check.get(c.check, 0) + (c.status == DRIFT)
    n = max(len(batches), 1)
    return (statuses.count(DRIFT) / n, sum(s in (DRIFT, WATCH) for s in statuses) / n,
            {k: v / n for k, v in per_check.items()})


def split_reference(ref: Reference) -> tuple[Reference, Reference | None]:
    """(the classifier's checks alone, stage 1's checks alone): batches of defect images are judged by
    the first, batches of good parts by the second (a line of mostly good parts), each with its own m."""
    import dataclasses

    defects = dataclasses.replace(ref, stage1_normal=None, stage1_threshold=None)
    good = (Reference(stage1_normal=ref.stage1_normal, stage1_threshold=ref.stage1_threshold)
            if ref.stage1_normal is not None else None)
    return defects, good


def power(job: Job, split: str, predictor, ref: Reference, sizes: list[int], reps: int, rng) -> dict[str, dict]:
    from osd.data.images import load_rgb

    test = job.manifest(split).test()
    ref_defects, ref_good = split_reference(ref)
    populations = [("defects", [e.path for e in test if e.role == "known"], ref_defects)]
    if ref_good is not None:
        populations.append(("good parts", [e.path for e in test if e.role == "normal"], ref_good))
    unknown = [e for e in test if e.role == "unknown"]
    rows_unknown = list(predictor.predict([load_rgb(e.path) for e in unknown]))
    out: dict[str, dict] = {}
    for population, paths, pop_ref in populations:
        rows = {name: list(predictor.predict([change(load_rgb(p), rng) for p in paths]))
                for name, change in CHANGES.items()}
        extra = ["unknowns 5%", "unknowns 20%"] if population == "defects" else []
        for name in [*CHANGES, *extra]:
            for size in sizes:
                drawn = []
                for _ in range(reps):
                    if name.startswith("unknowns"):
                        k = max(1, round(size * (0.05 if "5%" in name else 0.20)))
                        pick = [rows["none"][i] for i in rng.choice(len(paths), size - k, replace=size - k > len(paths))]
                        drawn.append(pick + [rows_unknown[i] for i in rng.choice(len(rows_unknown), k, replace=False)])
                    else:
                        drawn.append([rows[name][i] for i in rng.choice(len(paths), size, replace=size > len(paths))])
                drift, watch, per_check = rates(drawn, pop_ref)
                out[f"{population}: {name} | {size}"] = {"population": population, "change": name, "batch": size,
                                                         "reps": reps, "drift": drift, "watch_or_drift": watch,
                                                         "per_check_drift": per_check}
                print(f"{population:10s} {name:18s} batch {size:4d}: drift {drift:.2f}, watch or drift {watch:.2f}; "
                      + ", ".join(f"{k} {v:.2f}" for k, v in per_check.items()), flush=True)
    return out


def exchangeable_reference(val: list[dict], ref: Reference) -> Reference:
    """A reference made from drawn rows as the study makes its own from the validation images."""
    from osd.proportion import clopper_pearson

    dist = np.array([float(r["one_stage_score"]) for r in val])
    accepted = [r["closed_class"] for r in val if r["one_stage"] != "unknown"]
    mix = {c: accepted.count(c) / len(accepted) for c in sorted(set(accepted))} if accepted else {}
    return Reference(distance_val=dist, tau=ref.tau, acceptance=ref.acceptance,
                     acceptance_low=clopper_pearson(int(np.sum(dist <= ref.tau)), len(dist))[0], class_mix=mix,
                     class_n=len(accepted) or None)


def pool_false_alarms(job: Job, split: str, sizes: list[int], reps: int, rng) -> dict[str, dict]:
    """No-drift false alarms on one (split, seed) pool: against its reference, and under exchangeability."""
    from osd.pipeline.monitor import project_reference
    from osd.pipeline.predict import Predictor

    ref = project_reference(job, split)
    with_stage1 = ref.stage1_normal is not None
    predictor = Predictor(job, split, "both" if with_stage1 else "one-stage")
    manifest = job.manifest(split)
    test_known = list(predictor.predict([e.path for e in manifest.part("test", "known")]))
    val = list(predictor.predict([e.path for e in manifest.part("threshold", "known")]))
    normals = list(predictor.predict([e.path for e in manifest.part("test", "normal")])) if with_stage1 else []
    ref_defects, ref_good = split_reference(ref)
    out = {}
    for size in sizes:
        fixed = [[test_known[i] for i in rng.choice(len(test_known), size, replace=size > len(test_known))]
                 for _ in range(reps)]
        drift, watch, per_check = rates(fixed, ref_defects)
        if ref_good is not None:  # the stage-1 checks on batches of good parts (a line of mostly good parts)
            good = [[normals[i] for i in rng.choice(len(normals), size, replace=size > len(normals))]
                    for _ in range(reps)]
            g_drift, g_watch, g_per = rates(good, ref_good)
            drift, watch = (drift + g_drift) / 2, (watch + g_watch) / 2
            per_check = {**per_check, **{k: v / 2 for k, v in g_per.items()}}
        ex_drift, ex_watch, ex_checks = [], [], {}
        pool = val + test_known
        for _ in range(reps):
            order = rng.permutation(len(pool))
            r_rows = [pool[i] for i in order[:len(val)]]
            b_rows = [pool[i] for i in order[len(val):len(val) + size]]
            batches, refs = [b_rows], [exchangeable_reference(r_rows, ref)]
            if with_stage1 and len(normals) >= 2 * 5:
                half = rng.permutation(len(normals))
                r_n, b_n = half[:len(normals) // 2], half[len(normals) // 2:][:size]
                scores = np.array([float(normals[i]["stage1_score"]) for i in r_n])
                batches.append([normals[i] for i in b_n])
                refs.append(Reference(stage1_normal=scores, stage1_threshold=ref.stage1_threshold))
            for rows, r in zip(batches, refs):
                checks = check_batch("b", rows, r)
                status = batch_status(checks)
                ex_drift.append(status == DRIFT)
                ex_watch.append(status in (DRIFT, WATCH))
                for c in checks:
                    ex_checks[c.check] = ex_checks.get(c.check, 0) + (c.status == DRIFT)
        out[str(size)] = {"reference": {"drift": drift, "watch_or_drift": watch, "per_check_drift": per_check},
                          "exchangeable": {"drift": float(np.mean(ex_drift)), "watch_or_drift": float(np.mean(ex_watch)),
                                           "per_check_drift": {k: v / len(ex_drift) for k, v in ex_checks.items()}},
                          "reps": reps, "val_images": len(val), "test_known_images": len(test_known)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--split", default="a")
    ap.add_argument("--pools", default="", help="split:seed pools for the false alarms, e.g. a:0,b:0,c:0,a:1")
    ap.add_argument("--sizes", default="25,50,100")
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--no-power", action="store_true", help="only the false alarms")
    ap.add_argument("--set", action="append", default=[], dest="settings")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from osd.pipeline.monitor import project_reference
    from osd.pipeline.unknowns import choose_groups, embed_images

    project = osd.Project(a.project, a.settings)
    job = project.job
    sizes = [int(s) for s in a.sizes.split(",")]
    rng = np.random.default_rng(0)
    result: dict = {}
    if not a.no_power:
        ref = project_reference(job, a.split)
        predictor = project.predictor(a.split, "both" if ref.stage1_normal is not None else "one-stage")
        result["rates"] = power(job, a.split, predictor, ref, sizes, a.reps, rng)
        from sklearn.metrics import adjusted_rand_score

        unknown = [e for e in job.manifest(a.split).test() if e.role == "unknown"]
        labels, _ = choose_groups(embed_images(job, a.split, [e.path for e in unknown]))
        result["unknown_groups_ari"] = float(adjusted_rand_score([e.label for e in unknown], labels))
        result["groups"] = int(len(set(labels)))
        print(f"unknown groups: {result['groups']} for {len(set(e.label for e in unknown))} true unknown classes "
              f"({len(unknown)} images), adjusted Rand index {result['unknown_groups_ari']:.3f}")
    pools = [p.split(":") for p in a.pools.split(",") if p]
    result["pools"] = {}
    for split, seed in pools:
        fa = pool_false_alarms(Job.of(project.config.for_seed(int(seed))), split, sizes, a.reps, rng)
        result["pools"][f"{split}:{seed}"] = fa
        for size, v in fa.items():
            print(f"pool {split}:{seed} batch {size:>4s}: against its reference drift {v['reference']['drift']:.2f} "
                  f"(watch or drift {v['reference']['watch_or_drift']:.2f}); exchangeable drift "
                  f"{v['exchangeable']['drift']:.2f} (watch or drift {v['exchangeable']['watch_or_drift']:.2f}; "
                  + ", ".join(f"{k} {x:.2f}" for k, x in v["exchangeable"]["per_check_drift"].items()) + ")",
                  flush=True)
    for size in map(str, sizes):
        got = [v[size] for v in result["pools"].values()]
        if got:
            mean = {k: float(np.mean([g[k]["drift"] for g in got])) for k in ("reference", "exchangeable")}
            spread = [g["reference"]["drift"] for g in got]
            print(f"batch {size:>4s} over {len(got)} pools: drift against the reference {mean['reference']:.3f} "
                  f"(pools {min(spread):.2f}-{max(spread):.2f}), exchangeable {mean['exchangeable']:.3f}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

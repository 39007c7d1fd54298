"""The real study at the machine's speed: fp32 beside bf16, the bare model as the limit, --jobs 1 beside 2.

    python examples/bench_study.py --neu ../shared/data/NEU-DET --severstal ../shared/data/severstal \
        --out ../runs/bench [--parts limits,study,grid] [--precisions fp32,bf16] [--seed 0]

``study``: for each precision, a project made by ``osd init`` exactly as a new user makes it (the
defaults it writes, nothing overridden but ``project.precision``), ``osd run-all --seeds SEED`` in a
child process of its own; wall time per step, peak memory, training / embedding / PatchCore rates
against the bare forward and train step of the same model and precision (``limits``), every
headline number with its interval, and bf16 minus fp32 as paired bootstrap differences on the same
test images (closed-set accuracy, AUROC, open-set accuracy) with the stage-1 in-domain AUROC.
``grid``: the demo project, 2 seeds, ``--jobs 1`` beside ``--jobs 2`` with ``project.threads = 1``
(``summary.csv`` compared byte for byte) and with the defaults. Run it alone: a second busy
process on the same cores halves everything. Prints Markdown tables; ``--json`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from osd.pipeline.job import Job

METRICS = ("closed_set_accuracy", "auroc", "open_set_accuracy")


def _bare(precision: str, threads: int, train: bool, patch: bool = False, batch: int = 32, runs: int = 4) -> float:
    """Images/s of the bare model: Lite0 forward (or forward + backward + AdamW step) on random images."""
    import torch

    from osd.config import PatchcoreSection
    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier
    from osd.patchcore.features import PatchFeatureExtractor
    from osd.precision import Compute
    from osd.project import OFFLINE_SETTINGS

    torch.set_num_threads(threads)
    compute = Compute.on("cpu", precision)
    arch = OFFLINE_SETTINGS["classifier.arch"]
    if patch:
        model = PatchFeatureExtractor(build(arch, "imagenet"), list(PatchcoreSection().layers), arch=arch)
        model.compute_dtype = compute.dtype
    else:
        model = compute.model(EmbeddingClassifier(build(arch, "imagenet"), 4)).train(train)
    x = compute.inputs(torch.randn(batch, 3, 224, 224))
    y = torch.randint(0, 4, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        if train:
            opt.zero_grad(set_to_none=True)
            with compute.autocast():
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode(), compute.autocast():
                model(x)

    step()
    t = time.perf_counter()
    for _ in range(runs):
        step()
    return runs * batch / (time.perf_counter() - t)


def limits(precisions: list[str], threads: int) -> dict[str, dict[str, float]]:
    return {p: {"train_step": _bare(p, threads, True), "forward": _bare(p, threads, False),
                "patch_forward": _bare(p, threads, False, patch=True, batch=8)} for p in precisions}


def _child(project: Path, seed: int, precision: str, jobs: int, out: Path) -> None:
    """In a process of its own (its peak memory is its own): run-all as the CLI runs it."""
    from osd import config
    from osd.study import run_all

    cfg = config.load(project / config.PROJECT_FILE, [f"project.precision={precision}"])
    t = time.perf_counter()
    res = run_all(cfg, seeds=[seed], jobs=jobs)
    out_ = res.to_dict()
    rec = {"seconds": time.perf_counter() - t, "steps": out_["steps"], "failed": out_["failed"],
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    out.write_text(json.dumps(rec, default=str))


def _run_child(project: Path, seed: int, precision: str, jobs: int = 1) -> dict:
    out = project / f"bench_{precision}_jobs{jobs}.json"
    subprocess.run([sys.executable, __file__, "--child", str(project), "--seed", str(seed), "--precisions", precision,
                    "--jobs", str(jobs)], check=True)
    return json.loads(out.read_text())


def _predictions(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def _paired(fp32: Path, bf16: Path, classes: list[str], n_boot: int = 1000) -> dict[str, dict]:
    """bf16 minus fp32 on the same test images of one split (paired stratified bootstrap)."""
    from osd.metrics import EncodedResults, paired_difference

    a, b = _predictions(bf16), _predictions(fp32)
    paths = sorted(set(a) & set(b))

    def enc(rows: dict) -> EncodedResults:
        r = [rows[p] for p in paths]
        unk = np.array([x["role"] == "unknown" for x in r])
        return EncodedResults([x["true_label"] for x in r], [x["pred_label"] for x in r],
                              [x["closed_label"] for x in r], np.array([float(x["distance"]) for x in r]), unk, classes)

    ea, eb = enc(a), enc(b)
    return paired_difference(ea, eb, METRICS, ea.unk, n_boot, 0)


def _study_numbers(project: Path, precision: str) -> dict:
    from osd import config
    from osd.pipeline.train import embed, train

    cfg = config.load(project / config.PROJECT_FILE, [f"project.precision={precision}"])
    out = project / "outputs"
    fit = json.loads((out / "patchcore" / "fit_stats.json").read_text())
    splits = {}
    for sp in cfg.split_names:
        m = json.loads((out / f"split_{sp}" / "metrics.json").read_text())["osr"]
        tr, em = train(Job.of(cfg), sp), embed(Job.of(cfg), sp)  # cached: read, never recomputed
        splits[sp] = {
            **{k: m[k] for k in METRICS}, "ci": {k: m["intervals95"].get(k) for k in METRICS},
            "epochs_run": tr.epochs_run, "best_epoch": tr.best_epoch, "stopped_early": tr.stopped_early,
            "train_seconds": tr.seconds, "select_accuracy": [h.get("select_accuracy") for h in tr.history],
            "train_images": em.counts["train"], "embed_images_per_s": em.images_per_second,
        }
    return {"splits": splits, "stage1_indomain_auroc": fit.get("indomain", {}).get("auroc"),
            "patchcore_crops_per_s": fit["bank_crops"] / max(fit["extract_seconds"], 1e-9),
            "patchcore_extract_seconds": fit["extract_seconds"], "patchcore_layers": list(cfg.patchcore.layers)}


def study(args, lim: dict) -> dict:
    base = Path(args.out)
    results = {}
    for prec in args.precisions:
        project = base / f"study_{prec}"
        if not (project / "osd.toml").exists():
            subprocess.run(["osd", "init", str(project), "--neu", args.neu, "--severstal", args.severstal], check=True)
        results[prec] = {"run": _run_child(project, args.seed, prec), "numbers": _study_numbers(project, prec)}
    if "fp32" in results and "bf16" in results:
        from osd import config

        cfg = config.load(base / "study_fp32" / "osd.toml")
        results["paired"] = {sp: _paired(base / "study_fp32" / "outputs" / f"split_{sp}" / "osr" / "predictions.csv",
                                         base / "study_bf16" / "outputs" / f"split_{sp}" / "osr" / "predictions.csv",
                                         list(cfg.split(sp).known))
                             for sp in results["fp32"]["numbers"]["splits"]}
    return results


def grid(args) -> dict:
    base = Path(args.out) / "grid"
    out = {}
    for label, threads in (("threads=1", 1), ("defaults", 0)):
        for jobs in (1, 2):
            project = base / f"{label}_jobs{jobs}".replace("=", "")
            shutil.rmtree(project, ignore_errors=True)
            subprocess.run(["osd", "init", str(project), "--demo"], check=True, capture_output=True)
            sets = ["--set", "project.seeds=[0, 1]"] + (["--set", f"project.threads={threads}"] if threads else [])
            t = time.perf_counter()
            subprocess.run(["osd", "run-all", "--jobs", str(jobs), *sets], cwd=project, check=True, capture_output=True)
            out[(label, jobs)] = {"seconds": time.perf_counter() - t,
                                  "summary": (project / "outputs" / "summary.csv").read_bytes()}
    return {f"{k[0]} jobs {k[1]}": {"seconds": v["seconds"]} for k, v in out.items()} | {
        "identical_threads1": out[("threads=1", 1)]["summary"] == out[("threads=1", 2)]["summary"],
        "identical_defaults": out[("defaults", 1)]["summary"] == out[("defaults", 2)]["summary"]}


def _cell(v: float | None, ci: list | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def render(res: dict) -> str:
    lines = []
    lim = res.get("limits", {})
    if lim:
        lines += ["| precision | bare train step (img/s) | bare forward (img/s) | bare PatchCore forward (img/s) |",
                  "|---|---|---|---|"]
        lines += [f"| {p} | {v['train_step']:.1f} | {v['forward']:.1f} | {v['patch_forward']:.1f} |" for p, v in lim.items()]
    st = res.get("study", {})
    for prec in [p for p in st if p != "paired"]:
        run, num = st[prec]["run"], st[prec]["numbers"]
        lines += ["", f"### {prec}: one seed, {len(num['splits'])} splits, {run['seconds'] / 60:.1f} min, "
                      f"peak memory {max(run['peak_rss_mb'], run['children_peak_rss_mb']):.0f} MB", "",
                  "| step | seconds |", "|---|---|"]
        per: dict[str, float] = {}
        for s in run["steps"]:
            per[s["step"]] = per.get(s["step"], 0.0) + float(s["seconds"])
        lines += [f"| {k} | {v:.0f} |" for k, v in per.items()]
        lines += ["", "| split | epochs run (best) | train s | train x bare | embed x bare | closed-set acc. | AUROC "
                      "| open-set acc. |", "|---|---|---|---|---|---|---|---|"]
        for sp, v in num["splits"].items():
            bare_epoch = v["train_images"] / lim[prec]["train_step"] if prec in lim else None
            per_epoch = v["train_seconds"] / max(v["epochs_run"], 1)
            lines.append(f"| {sp} | {v['epochs_run']} ({v['best_epoch']}) | {v['train_seconds']:.0f} | "
                         + (f"{bare_epoch / per_epoch:.2f}" if bare_epoch else "-") + " | "
                         + (f"{v['embed_images_per_s'] / lim[prec]['forward']:.2f}" if prec in lim else "-") + " | "
                         + " | ".join(_cell(v[k], v["ci"][k]) for k in METRICS) + " |")
        lines.append(f"\nstage-1 in-domain AUROC {_cell(num['stage1_indomain_auroc'])}; PatchCore extraction "
                     f"{num['patchcore_crops_per_s']:.1f} crops/s"
                     + (f" ({num['patchcore_crops_per_s'] / lim[prec]['patch_forward']:.2f}x the bare forward)"
                        if prec in lim else ""))
    if "paired" in st:
        lines += ["", "bf16 minus fp32, paired bootstrap on the same test images:", "",
                  "| split | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for sp, d in st["paired"].items():
            lines.append(f"| {sp} | " + " | ".join(
                f"{d[k]['difference']:+.3f} [{d[k]['ci95'][0]:+.3f}, {d[k]['ci95'][1]:+.3f}]" for k in METRICS) + " |")
    gr = res.get("grid")
    if gr:
        lines += ["", "| demo grid (2 seeds) | seconds |", "|---|---|"]
        lines += [f"| {k} | {v['seconds']:.0f} |" for k, v in gr.items() if isinstance(v, dict)]
        lines.append(f"\nsummary.csv identical, jobs 1 vs 2: threads=1 {gr['identical_threads1']}, "
                     f"defaults {gr['identical_defaults']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--neu", default="../shared/data/NEU-DET")
    ap.add_argument("--severstal", default="../shared/data/severstal")
    ap.add_argument("--out", default="../runs/bench")
    ap.add_argument("--parts", default="limits,study,grid")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.precisions = args.precisions.split(",")
    if args.child:
        return _child(Path(args.child), args.seed, args.precisions[0], args.jobs,
                      Path(args.child) / f"bench_{args.precisions[0]}_jobs{args.jobs}.json")
    parts = args.parts.split(",")
    res: dict = {}
    if "limits" in parts:
        res["limits"] = limits(args.precisions, args.threads)
    if "study" in parts:
        res["study"] = study(args, res.get("limits", {}))
    if "grid" in parts:
        res["grid"] = grid(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    print(render(res))


if __name__ == "__main__":
    main()

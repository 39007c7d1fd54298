"""PatchCore's fit against the number of normal images: the chunked coreset beside the exact greedy.

    python examples/bench_patchcore_scale.py [--sizes 200,800,3200] [--greedy-up-to 200]
        [--image-size 128] [--chunk 20000] [--threads 2] [--real ../shared/data/severstal] [--keep DIR]

Synthetic Severstal-like strips (1600 x 256, the demo generator: normal ones, and defective ones with
a train.csv mask) are written once in the Severstal layout: a pool whose bank share holds the
largest N. Per setting (N bank images x coreset method), in a fresh process (its peak RSS is its
own), the real step runs: ``osd.pipeline.detector.fitted`` (extraction, coreset, threshold on
calibration crops, scores of the held-out normal crops, the in-domain test on the defective strips'
crops labelled by their masks). Every N shares the same calibration, test and defective images
(``patchcore.max_bank_images = N`` draws the bank). Then the same on the real Severstal subset
at the project's default image size. Printed per setting: fit time (extraction + selection), peak
RSS, patches before / kept, the in-domain AUROC; against the exact greedy where it ran: the
covering radius of the bank (largest distance from any bank-image patch to its nearest kept patch)
and the Spearman correlation of the held-out crop scores. Run it alone.

Targets (issue 24): chunked fit at N = 3,200 within 10 minutes on 2 cores; time 3,200 / 800 at most
5x (linear: 4x); in-domain AUROC within 0.01 of the exact greedy; peak memory bounded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np, torch
from osd.pipeline.job import Job
from osd import config, runtime
from osd.pipeline.data import stage1_sizes
from osd.pipeline.detector import stage1_fit_step, build_extractor, stage1_spec, _bank_paths
from osd.patchcore.stage1 import crop_samples, feature_batches
from osd.pipeline.data import normal_data
from osd.patchcore.search import nearest

root, sets, threads, coverage = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(threads)
cfg = config.Config(base_dir=root).replace(**sets)
t = time.perf_counter()
step = fitted(Job.of(cfg))
wall = time.perf_counter() - t
p = step.payload
s = p["stats"]
out = {"wall_s": wall, "extract_s": s["extract_seconds"], "select_s": s["select_seconds"],
       "patches": s["patches_before"], "kept": s["patches_after"], "bank_images": s["bank_images"],
       "bank_crops": s["bank_crops"], "chunks": s.get("chunks"), "auroc": p["indomain"].get("auroc"),
       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "scores": [float(v) for v in p["calibration_scores"]] + [float(v) for v in p["test_scores"]]}
# nearest-neighbour scoring alone (features extracted first): ms per crop against this bank
from osd.patchcore.model import PatchCore
det = PatchCore.from_bank(p["bank"], cfg.patchcore.num_neighbors, cfg.patchcore.search)
ext = build_extractor(stage1_spec(Job.of(cfg)), torch.device("cpu"), runtime.resources(cfg.project).patchcore.dtype)
crops = crop_samples(list(normal_data(cfg).split.test), stage1_sizes(cfg))[:192]
maps = [f for _, f in feature_batches(ext, crops, stage1_sizes(cfg), torch.device("cpu"))]
t = time.perf_counter()
for f in maps:
    det.score_samples(f)
out["nn_ms_per_crop"] = (time.perf_counter() - t) / max(len(crops), 1) * 1000
if coverage:  # the bank images' patches again: each one's distance to its nearest kept patch
    bank = p["bank"].float()
    sq = (bank * bank).sum(1)
    radius = 0.0
    from osd.patchcore.features import to_patches
    samples = crop_samples(_bank_paths(Job.of(cfg), normal_data(cfg)), stage1_sizes(cfg))
    for _, feats in feature_batches(ext, samples, stage1_sizes(cfg), torch.device("cpu")):
        d, _ = nearest(to_patches(feats).float(), bank, sq, 1)
        radius = max(radius, float(d.max()))
    out["radius"] = radius
print(json.dumps(out))
"""


def write_pool(root: Path, normals: int, defective: int) -> Path:
    """Severstal layout: train_images/ and train.csv; a defective strip's mask covers its defect square."""
    import numpy as np

    from osd.data.demo import write_strips

    sev = root / "severstal"
    if (sev / "train.csv").is_file():  # written once, reused by later runs with --keep
        return sev
    return write_strips(sev, normals, defective, np.random.default_rng(7), prefix="s")


def common_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options both PatchCore-at-scale benchmarks take (the pool, the trunk's input, the machine)."""
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "severstal"))
    ap.add_argument("--keep", default="")
    return ap


def synthetic_setup(keep: str, sizes: list[int], image_size: int, chunk: int, threads: int, prefix: str
                    ) -> tuple[Path, int, dict]:
    """(folder, pool size, settings) of the synthetic pool shared by the PatchCore-at-scale benchmarks:
    bank share 0.9 of the pool holds the largest N; calibration and test 5% each, the same for every N."""
    root = Path(keep or tempfile.mkdtemp(prefix=prefix))
    root.mkdir(parents=True, exist_ok=True)
    pool = round(max(sizes) / 0.9) + 1
    write_pool(root, pool, 40)
    base = {"patchcore.backbone": "tf_efficientnet_lite0", "patchcore.weights": "imagenet",
            "patchcore.image_size": image_size, "normal.severstal_root": "severstal", "normal.bank_fraction": 0.9,
            "normal.calibration_fraction": 0.05, "project.threads": threads, "project.workers": 0,
            "patchcore.coreset_chunk": chunk}
    return root, pool, base


def run(root: Path, sets: dict, threads: int, coverage: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(root), json.dumps(sets), str(threads), "1" if coverage else "0"],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200,800,3200")
    ap.add_argument("--greedy-up-to", type=int, default=200, help="largest N the exact greedy runs at")
    a = common_arguments(ap).parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    root, pool, base = synthetic_setup(a.keep, sizes, a.image_size, a.chunk, a.threads, "osd-pcscale-")
    print(f"synthetic pool: {pool} normal strips + 40 defective, in {root}; Lite0 (offline ImageNet weights), "
          f"{a.image_size} px, coreset ratio 0.02, chunk {a.chunk} patches, {a.threads} threads")
    rows = []
    for n in sizes:
        methods = ["chunked", "greedy"] if n <= a.greedy_up_to else ["chunked"]
        res = {}
        for m in methods:
            sets = {**base, "patchcore.max_bank_images": n, "patchcore.coreset": m,
                    "project.output_dir": f"out_{n}_{m}"}
            res[m] = run(root, sets, a.threads, coverage=n <= a.greedy_up_to)
            print(f"  N={n} {m}: {json.dumps({k: v for k, v in res[m].items() if k != 'scores'})}", flush=True)
        for m, r in res.items():
            g = res.get("greedy")
            rows.append({"data": "synthetic", "N": n, "coreset": m, **{k: v for k, v in r.items() if k != "scores"},
                         "spearman_vs_greedy": spearman(r["scores"], g["scores"]) if g else None,
                         "auroc_minus_greedy": (r["auroc"] - g["auroc"]) if g else None,
                         "radius_vs_greedy": (r["radius"] / g["radius"]) if g and "radius" in r else None})
    real = Path(a.real)
    if (real / "train.csv").is_file():
        res = {}
        for m, chunk in (("greedy", a.chunk), ("chunked", a.chunk), ("chunked", 10_000)):
            sets = {"patchcore.backbone": "tf_efficientnet_lite0", "patchcore.weights": "imagenet",
                    "normal.severstal_root": str(real), "patchcore.coreset": m, "patchcore.coreset_chunk": chunk,
                    "project.threads": a.threads, "project.workers": 0, "project.output_dir": f"real_{m}_{chunk}"}
            res[(m, chunk)] = run(root, sets, a.threads, coverage=True)
            print(f"  real {m} chunk {chunk}: "
                  f"{json.dumps({k: v for k, v in res[(m, chunk)].items() if k != 'scores'})}", flush=True)
        g = res[("greedy", a.chunk)]
        for (m, chunk), r in res.items():
            rows.append({"data": "real Severstal subset (224 px)", "N": r["bank_images"],
                         "coreset": m if m == "greedy" else f"chunked ({chunk})",
                         **{k: v for k, v in r.items() if k != "scores"},
                         "spearman_vs_greedy": spearman(r["scores"], g["scores"]),
                         "auroc_minus_greedy": r["auroc"] - g["auroc"], "radius_vs_greedy": r["radius"] / g["radius"]})
    print()
    print("| data | N bank images | coreset | crops | patches | kept | chunks | extract s | select s | fit s | "
          "peak RSS MB | NN ms/crop | in-domain AUROC | AUROC - greedy | radius / greedy | Spearman vs greedy |")
    print("|" + "---|" * 16)

    def f(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    for r in rows:
        print(f"| {r['data']} | {r['N']} | {r['coreset']} | {r['bank_crops']} | {r['patches']:,} | {r['kept']:,} | "
              f"{r['chunks'] or '-'} | {r['extract_s']:.0f} | {r['select_s']:.0f} | {r['extract_s'] + r['select_s']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['nn_ms_per_crop']:.1f} | {f(r['auroc'])} | {f(r['auroc_minus_greedy'], '+.3f')} | "
              f"{f(r['radius_vs_greedy'], '.2f')} | {f(r['spearman_vs_greedy'])} |")
    syn = {r["N"]: r for r in rows if r["data"] == "synthetic" and r["coreset"] == "chunked"}
    if len(syn) > 1:
        ns = sorted(syn)
        big, mid = syn[ns[-1]], syn[ns[-2]]
        fit = lambda r: r["extract_s"] + r["select_s"]  # noqa: E731
        print(f"\nchunked fit time N={ns[-1]} / N={ns[-2]}: {fit(big) / fit(mid):.2f}x (data {ns[-1] / ns[-2]:.0f}x); "
              f"selection alone {big['select_s'] / max(mid['select_s'], 1e-9):.2f}x; "
              f"peak RSS {big['peak_rss_mb'] / mid['peak_rss_mb']:.2f}x; fit at N={ns[-1]}: {fit(big) / 60:.1f} min")


if __name__ == "__main__":
    main()

"""Nearest-neighbour scoring against banks 1x, 4x and 16x the size: exact search beside faiss's
inverted file (the approximate index ``patchcore.search = "ivf"``, and ``"auto"`` above
``patchcore.exact_up_to`` bank rows).

    python examples/bench_patchcore_search.py [--sizes 200,800,3200] [--probes 1,4,16,64]
        [--image-size 128] [--threads 2] [--real ../shared/data/severstal] [--keep DIR]

The banks are the chunked-coreset banks of ``examples/bench_patchcore_scale.py`` (same synthetic
Severstal-like pool, same settings; with the same ``--keep DIR`` its fits are read from the cache).
Per bank, in a fresh process: the features of every scored crop are extracted once (held-out normal
crops, and the crops of the defective strips labelled by their masks), then scored by each search:
``torch`` (exact, pruned: the default up to ``exact_up_to``), ``faiss`` (exact, flat index) and the
inverted file at each probe count. Printed per search: index build time (k-means included), ms per
crop (scoring only), the in-domain AUROC, its difference from exact, the Spearman correlation of the
crop scores with exact, the share of crops whose score equals exact, and the largest relative
overestimate (an inverted file can only miss the nearest row, so its scores are never below exact).
Then the same on the real Severstal subset (its bank is small: the inverted file forced). Run alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from osd.pipeline.job import Job
from osd import config, runtime
from osd.patchcore.model import MemoryBank
from osd.patchcore.features import to_patches
from osd.pipeline.data import normal_data
from osd.pipeline.data import stage1_sizes
from osd.pipeline.detector import build_extractor, fitted, stage1_spec
from osd.patchcore.fit import DefectParts, labelled_crops
from osd.patchcore.stage1 import crop_samples, feature_batches

root, sets, threads, probes = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
torch.set_num_threads(threads)
cfg = config.Config(base_dir=root).replace(**sets)
step = fitted(Job.of(cfg))
bank = torch.as_tensor(step.payload["bank"]).float()
data = normal_data(cfg)
defect, labels, _ = labelled_crops(DefectParts(data.defective, data.masks, cfg.normal.min_defect_fraction),
                                   stage1_sizes(cfg))
normals = crop_samples(list(data.split.test), stage1_sizes(cfg))
samples = normals + defect
y = np.r_[np.zeros(len(normals)), np.asarray(labels, dtype=float)]
ext = build_extractor(stage1_spec(Job.of(cfg)), torch.device("cpu"), runtime.resources(cfg.project).patchcore.dtype)
maps = [None] * len(samples)
for idx, f in feature_batches(ext, samples, stage1_sizes(cfg), torch.device("cpu")):
    for j, i in enumerate(idx):
        maps[i] = f[j : j + 1]
keep = [i for i, m in enumerate(maps) if m is not None]
y = y[keep]
maps = [maps[i] for i in keep]
ppi = maps[0].shape[2] * maps[0].shape[3]
patches = torch.cat([to_patches(m) for m in maps])
rows = []
exact = None
for name, search, probe in [("exact (torch, pruned)", "torch", 0), ("exact (faiss flat)", "faiss", 0)] + [
        (f"ivf probe {p}", "ivf", p) for p in probes]:
    t = time.perf_counter()
    mb = MemoryBank(bank, 1, search, probe=max(probe, 1))
    build = time.perf_counter() - t
    t = time.perf_counter()
    scores = torch.cat([mb.score_patches(patches[s : s + 32 * ppi], ppi) for s in range(0, len(patches), 32 * ppi)])
    ms = (time.perf_counter() - t) / len(maps) * 1000
    s = scores.numpy().astype(np.float64)
    if exact is None:
        exact = s
    rows.append({"search": name, "bank_rows": int(bank.shape[0]), "dim": int(bank.shape[1]),
                 "lists": mb.search_.get("lists"), "probe": mb.search_.get("probe"), "build_s": build,
                 "ms_per_crop": ms, "auroc": float(roc_auc_score(y, s)), "auroc_exact": float(roc_auc_score(y, exact)),
                 "spearman": float(spearmanr(s, exact).statistic), "equal": float(np.mean(np.isclose(s, exact, rtol=1e-5))),
                 "max_over": float(np.max(s / exact - 1)), "min_over": float(np.min(s / exact - 1)), "crops": len(maps)})
print(json.dumps(rows))
"""


def run(root: Path, sets: dict, threads: int, probes: list[int]) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", CHILD, str(root), json.dumps(sets), str(threads), json.dumps(probes)],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200,800,3200")
    ap.add_argument("--probes", default="1,4,16,64")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_patchcore_scale import common_arguments, synthetic_setup  # the scale benchmark's pool

    a = common_arguments(ap).parse_args()

    sizes, probes = [int(x) for x in a.sizes.split(",")], [int(x) for x in a.probes.split(",")]
    root, pool, base = synthetic_setup(a.keep, sizes, a.image_size, a.chunk, a.threads, "osd-pcsearch-")
    base["patchcore.search"] = "torch"
    print(f"synthetic pool: {pool} normal strips + 40 defective, in {root}; Lite0 (offline ImageNet weights), "
          f"{a.image_size} px, chunked coreset 0.02, {a.threads} threads; banks fitted with the exact search")
    rows = []
    for n in sizes:
        sets = {**base, "patchcore.max_bank_images": n, "project.output_dir": f"search_{n}"}
        rows += [{"data": f"synthetic N={n}", **r} for r in run(root, sets, a.threads, probes)]
        print(f"  N={n}: done", flush=True)
    real = Path(a.real)
    if (real / "train.csv").is_file():
        sets = {"patchcore.backbone": "tf_efficientnet_lite0", "patchcore.weights": "imagenet",
                "normal.severstal_root": str(real), "project.threads": a.threads, "project.workers": 0,
                "patchcore.search": "torch", "project.output_dir": "search_real"}
        rows += [{"data": "real Severstal subset (224 px)", **r} for r in run(root, sets, a.threads, probes)]
    print()
    print("| data | bank rows | search | lists | build s | ms / crop | speed-up | in-domain AUROC | AUROC - exact | "
          "Spearman vs exact | crops = exact | largest overestimate |")
    print("|" + "---|" * 12)
    base_ms = {}
    for r in rows:
        base_ms.setdefault(r["data"], r["ms_per_crop"])
        print(f"| {r['data']} | {r['bank_rows']:,} | {r['search']} | {r['lists'] or '-'} | {r['build_s']:.1f} | "
              f"{r['ms_per_crop']:.1f} | {base_ms[r['data']] / r['ms_per_crop']:.1f}x | {r['auroc']:.3f} | "
              f"{r['auroc'] - r['auroc_exact']:+.3f} | {r['spearman']:.3f} | {r['equal']:.1%} | {r['max_over']:+.1%} |")
    print(f"\ncrops scored per bank: {rows[0]['crops']} (synthetic); feature dimension {rows[0]['dim']}")


if __name__ == "__main__":
    main()

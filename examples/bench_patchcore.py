"""Benchmark: osd's PatchCore against anomalib's ``PatchcoreModel`` on the same images.

Both fit a memory bank on the same normal Severstal crops with the same random-init
``wide_resnet50_2`` weights (one state dict, loaded into both), the same image size and coreset
ratio, then score the same test crops. Each side runs in its own process, so peak memory (max
RSS) is its own. Prints wall times, peak memory, scoring throughput, the osd/anomalib ratios and
the Spearman correlation of the two sets of image scores.

    python examples/bench_patchcore.py --severstal ../shared/data/severstal \
        --anomalib-python /path/to/venv-with-anomalib/bin/python

anomalib is not a dependency of osd: install it in any environment with torch
(``pip install anomalib``) and point ``--anomalib-python`` at that interpreter.
Only torch is imported at the top, so the anomalib worker does not need osd.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
LAYERS = ["layer2", "layer3"]


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - MEAN) / STD


def _batches(x: torch.Tensor, bs: int):
    for s in range(0, len(x), bs):
        yield _norm(x[s : s + bs])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    """Current resident memory (Linux), to separate the libraries' footprint from the work's."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def _backbone(weights: str):
    import torchvision

    m = torchvision.models.wide_resnet50_2(weights=None)
    m.load_state_dict(torch.load(weights, weights_only=True))
    return m.eval()


def worker_osd(data: dict, args) -> dict:
    import torchvision  # noqa: F401 - both sides import it; counted in the baseline

    from osd.models.backbones import build
    from osd.patchcore.features import PatchFeatureExtractor, to_patches
    from osd.patchcore.model import MemoryBank, build_memory_bank

    baseline = _rss_mb()
    ext = PatchFeatureExtractor(build("wide_resnet50_2", args.weights), LAYERS)  # osd's own loading path
    t = time.perf_counter()
    with torch.inference_mode():
        bank, stats = build_memory_bank((ext(x) for x in _batches(data["bank"], args.batch)), args.coreset,
                                        args.projection_dim, torch.Generator().manual_seed(args.seed))
        mb = MemoryBank(bank)  # builds the search index: part of fitting
    fit = time.perf_counter() - t
    t = time.perf_counter()
    scores = []
    with torch.inference_mode():
        for x in _batches(data["test"], args.batch):
            f = ext(x)
            scores += mb.score_patches(to_patches(f), f.shape[2] * f.shape[3]).tolist()
    score_s = time.perf_counter() - t
    return {"fit_seconds": fit, "select_seconds": stats["select_seconds"], "score_seconds": score_s,
            "bank": list(bank.shape), "scores": scores, "baseline_rss_mb": baseline, "peak_rss_mb": _peak_mb(),
            "same_bank_scores": _same_bank_osd(ext, data, args)}


def _same_bank_osd(ext, data: dict, args) -> list[float]:
    """Scores against every patch of the first bank crops (no coreset): isolates features and scoring."""
    from osd.patchcore.features import to_patches
    from osd.patchcore.model import MemoryBank

    with torch.inference_mode():
        bank = torch.cat([to_patches(ext(x)) for x in _batches(data["bank"][: args.same_bank_crops], args.batch)])
        mb, scores = MemoryBank(bank), []
        for x in _batches(data["test"], args.batch):
            f = ext(x)
            scores += mb.score_patches(to_patches(f), f.shape[2] * f.shape[3]).tolist()
    return scores


def worker_anomalib(data: dict, args) -> dict:
    import torchvision  # noqa: F401
    from anomalib.models.components.feature_extractors import TimmFeatureExtractor
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    baseline = _rss_mb()
    model = PatchcoreModel(layers=LAYERS, backbone="wide_resnet50_2", pre_trained=False, num_neighbors=1)
    model.feature_extractor = TimmFeatureExtractor(backbone=_backbone(args.weights), layers=LAYERS,
                                                   pre_trained=False).eval()
    model.train()
    t = time.perf_counter()
    for x in _batches(data["bank"], args.batch):
        model(x)
    t_sel = time.perf_counter()
    model.subsample_embedding(args.coreset)
    fit = time.perf_counter() - t
    select = time.perf_counter() - t_sel
    model.eval()
    t = time.perf_counter()
    scores = []
    with torch.no_grad():
        for x in _batches(data["test"], args.batch):
            scores += model(x).pred_score.flatten().tolist()
    score_s = time.perf_counter() - t
    peak, bank_shape = _peak_mb(), list(model.memory_bank.shape)  # before the same-bank check
    # the same-bank check: every patch of the first bank crops, no coreset
    with torch.no_grad():
        model.train()
        model.memory_bank = torch.empty(0)
        model.embedding_store = []
        for x in _batches(data["bank"][: args.same_bank_crops], args.batch):
            model(x)
        model.memory_bank = torch.vstack(model.embedding_store)
        model.embedding_store = []
        model.eval()
        same = []
        for x in _batches(data["test"], args.batch):
            same += model(x).pred_score.flatten().tolist()
    return {"fit_seconds": fit, "select_seconds": select, "score_seconds": score_s,
            "bank": bank_shape, "scores": scores, "baseline_rss_mb": baseline, "peak_rss_mb": peak,
            "same_bank_scores": same}


def prepare(args, tmp: Path) -> dict:
    """Crops with osd's data layer; one seeded random-init state dict for both sides."""
    from osd.data.images import load_rgb
    from osd.data.severstal import crop_boxes, index_severstal
    from osd.data.splits import split_normals
    from osd.data.tensors import pil_to_uint8

    idx = index_severstal(args.severstal)
    split = split_normals(list(idx.normal), 0.7, 0.15, seed=0)

    def crops(paths):
        out = []
        for p in paths:
            img = load_rgb(p)
            grey = __import__("numpy").asarray(img.convert("L"))
            out += [pil_to_uint8(img.crop(b), args.image_size) for b in crop_boxes(grey, 256, 256, 30, 0.5)]
        return torch.stack(out)

    bank_paths = list(split.bank)[: args.images]
    bank = crops(bank_paths)
    test = torch.cat([crops(list(split.calibration) + list(split.test)), crops(list(idx.defective)[:4])])
    torch.manual_seed(0)
    import torchvision

    torch.save(torchvision.models.wide_resnet50_2(weights=None).state_dict(), tmp / "wrn50_random.pth")
    torch.save({"bank": bank, "test": test}, tmp / "data.pt")
    return {"bank_images": len(bank_paths), "bank_crops": len(bank), "test_crops": len(test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--severstal", type=Path, default=Path("../shared/data/severstal"))
    ap.add_argument("--anomalib-python", default=sys.executable)
    ap.add_argument("--images", type=int, default=14, help="normal images in the bank")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--projection-dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="osd's coreset seed")
    ap.add_argument("--same-bank-crops", type=int, default=2,
                    help="bank crops whose every patch forms the no-coreset bank of the same-bank check")
    ap.add_argument("--osd-seed-check", action="store_true",
                    help="fit osd a second time with another seed: how much the coreset alone moves the ranking")
    ap.add_argument("--worker", choices=["osd", "anomalib"])
    ap.add_argument("--data")
    ap.add_argument("--weights")
    args = ap.parse_args()
    if args.worker:
        torch.manual_seed(0)
        data = torch.load(args.data, weights_only=True)
        fn = worker_osd if args.worker == "osd" else worker_anomalib
        out = fn(data, args)
        out.setdefault("peak_rss_mb", _peak_mb())
        out["threads"] = torch.get_num_threads()
        print("RESULT " + json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        info = prepare(args, tmp)
        print(f"bank: {info['bank_images']} images, {info['bank_crops']} crops; test: {info['test_crops']} crops; "
              f"{args.image_size}px, coreset {args.coreset}, wide_resnet50_2 random init (same state dict)")
        results = {}
        runs = [("osd", sys.executable, 0), ("anomalib", args.anomalib_python, 0)]
        if args.osd_seed_check:
            runs.append(("osd", sys.executable, 1))
        for name, py, seed in runs:
            cmd = [py, __file__, "--worker", name, "--data", str(tmp / "data.pt"), "--weights",
                   str(tmp / "wrn50_random.pth"), "--coreset", str(args.coreset), "--batch", str(args.batch),
                   "--projection-dim", str(args.projection_dim), "--seed", str(seed),
                   "--same-bank-crops", str(args.same_bank_crops)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"{name} worker failed:\n{proc.stderr[-3000:]}")
            results[name if seed == 0 else f"{name}-seed{seed}"] = json.loads(line[0][7:])
    from scipy.stats import spearmanr

    o, a = results["osd"], results["anomalib"]
    n = info["test_crops"]
    rows = [
        ("fit wall time (s)", o["fit_seconds"], a["fit_seconds"], o["fit_seconds"] / a["fit_seconds"]),
        ("  of which coreset selection (s)", o["select_seconds"], a["select_seconds"],
         o["select_seconds"] / a["select_seconds"]),
        ("peak memory, max RSS (MB)", o["peak_rss_mb"], a["peak_rss_mb"], o["peak_rss_mb"] / a["peak_rss_mb"]),
        ("  RSS after importing torch(vision)", o["baseline_rss_mb"], a["baseline_rss_mb"],
         o["baseline_rss_mb"] / a["baseline_rss_mb"]),
        ("  peak above that (the work)", o["peak_rss_mb"] - o["baseline_rss_mb"],
         a["peak_rss_mb"] - a["baseline_rss_mb"],
         (o["peak_rss_mb"] - o["baseline_rss_mb"]) / (a["peak_rss_mb"] - a["baseline_rss_mb"])),
        ("scoring throughput (images/s)", n / o["score_seconds"], n / a["score_seconds"],
         a["score_seconds"] / o["score_seconds"]),
    ]
    print(f"{'':34s}{'osd':>12s}{'anomalib':>12s}{'osd/anomalib':>14s}")
    for label, x, y, r in rows:
        print(f"{label:34s}{x:12.2f}{y:12.2f}{r:14.3f}")
    print(f"memory bank: osd {o['bank']}, anomalib {a['bank']}; threads {o['threads']}")
    print(f"Spearman correlation of image scores: {spearmanr(o['scores'], a['scores']).statistic:.4f} (n={n})")
    same = spearmanr(o["same_bank_scores"], a["same_bank_scores"]).statistic
    diff = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(o["same_bank_scores"], a["same_bank_scores"]))
    print(f"same bank (every patch of {args.same_bank_crops} bank crops, no coreset): Spearman {same:.4f}, "
          f"largest relative score difference {diff:.2e}")
    if "osd-seed1" in results:
        floor = spearmanr(o["scores"], results["osd-seed1"]["scores"]).statistic
        print(f"osd seed 0 vs seed 1 (coreset randomness alone): Spearman {floor:.4f}")


if __name__ == "__main__":
    main()

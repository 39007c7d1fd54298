"""Step ``bench``: latency and throughput of both approaches, stage by stage, warm-up excluded."""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from osd import __version__, artifacts, runtime
from osd.config import Config
from osd.pipeline.data import split_manifest
from osd.pipeline.detector import load_detector
from osd.pipeline.osr import calibrated
from osd.pipeline.train import load_model, trained
from osd.progress import Reporter, ensure


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _summary(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean())}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


@runtime.scoped
def bench(cfg: Config, split: str, reporter: Reporter | None = None) -> dict[str, Any]:
    """Per-image latency at batch size 1 (median, p95) and throughput at ``bench.batch_size``."""
    import torch

    from osd.data.images import load_rgb
    from osd.data.tensors import normalize, pil_to_uint8
    from osd.osr.features import stack
    from osd.patchcore.features import to_patches

    reporter = ensure(reporter)
    split = cfg.split_name(split)
    device = runtime.setup(cfg)
    cal = calibrated(cfg, split, reporter=reporter)
    scorer, blocks = cal.payload["scorer"], list(cal.payload["blocks"])
    tpayload = trained(cfg, split, reporter=reporter).payload
    model = load_model(cfg, tpayload).to(device)
    detector, extractor, fit = load_detector(cfg, device, reporter)
    bank = detector.memory.to(device)
    extractor.eval()
    paths = [e.path for e in split_manifest(cfg, split).test()]
    b, runs, warm = cfg.bench.batch_size, cfg.bench.runs, cfg.bench.warmup
    need = max(runs + warm, b)
    paths = (paths * (need // max(len(paths), 1) + 1))[:need]
    cs, ps = cfg.classifier.image_size, cfg.patchcore.image_size

    def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        _sync(device)
        t = time.perf_counter()
        out = fn(*args)
        _sync(device)
        return out, time.perf_counter() - t

    def prep(img, size):
        return normalize(pil_to_uint8(img, size).unsqueeze(0).to(device))

    def osr_score(st):
        return scorer.score_samples(stack({k: st[k].cpu().numpy() for k in blocks}, blocks)[0])

    def nn_score(feats):
        return bank.score_patches(to_patches(feats), feats.shape[2] * feats.shape[3])

    stages: dict[str, list[float]] = {k: [] for k in (
        "decode", "classifier_preprocess", "classifier_forward", "mahalanobis",
        "patchcore_preprocess", "patchcore_features", "nn_search")}
    with torch.inference_mode(), reporter.task("latency (batch 1)", runs + warm) as task:
        for i, p in enumerate(paths[: runs + warm]):
            img, t_dec = timed(load_rgb, p)
            x, t_cp = timed(prep, img, cs)
            (st, _), t_cf = timed(model.embed_stages, x)
            _, t_m = timed(osr_score, st)
            xp, t_pp = timed(prep, img, ps)
            feats, t_pf = timed(extractor, xp)
            _, t_nn = timed(nn_score, feats)
            if i >= warm:
                for k, v in zip(stages, (t_dec, t_cp, t_cf, t_m, t_pp, t_pf, t_nn)):
                    stages[k].append(v)
            task.advance(1)
    one = [a + b_ + c + d for a, b_, c, d in zip(stages["decode"], stages["classifier_preprocess"],
                                                 stages["classifier_forward"], stages["mahalanobis"])]
    two = [sum(v) for v in zip(stages["decode"], stages["patchcore_preprocess"], stages["patchcore_features"],
                               stages["nn_search"], stages["classifier_preprocess"], stages["classifier_forward"])]

    def throughput(fn: Callable[[list[Any]], Any], imgs: list[Any]) -> float:
        fn(imgs)  # warm-up
        _, t = timed(fn, imgs)
        return len(imgs) / t

    with torch.inference_mode():
        batch_imgs = [load_rgb(p) for p in paths[:b]]

        def one_stage(imgs):
            x = normalize(torch.stack([pil_to_uint8(i, cs) for i in imgs]).to(device))
            st, _ = model.embed_stages(x)
            return osr_score(st)

        def two_stage(imgs):
            xp = normalize(torch.stack([pil_to_uint8(i, ps) for i in imgs]).to(device))
            f = extractor(xp)
            s = bank.score_patches(to_patches(f), f.shape[2] * f.shape[3])
            x = normalize(torch.stack([pil_to_uint8(i, cs) for i in imgs]).to(device))
            return s, model(x)

        tp_one = throughput(one_stage, batch_imgs)
        tp_two = throughput(two_stage, batch_imgs)
    result = {
        "split": split,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "osd": __version__,
        "runs": runs, "warmup": warm, "batch_size": b,
        "classifier": f"{cfg.classifier.arch} @ {cs}px ({tpayload['weights']} weights)",
        "patchcore": f"{cfg.patchcore.backbone} @ {ps}px, bank {tuple(bank.bank.shape)}",
        "one_stage": {"latency": _summary(one), "throughput_images_per_s": tp_one,
                      "stages": {k: _summary(stages[k]) for k in
                                 ("decode", "classifier_preprocess", "classifier_forward", "mahalanobis")}},
        "two_stage": {"latency": _summary(two), "throughput_images_per_s": tp_two,
                      "stages": {k: _summary(stages[k]) for k in
                                 ("decode", "patchcore_preprocess", "patchcore_features", "nn_search",
                                  "classifier_preprocess", "classifier_forward")}},
        "peak_rss_mb": _peak_rss_mb(),
        "median_note": f"median of {runs} single-image runs after {warm} warm-up runs",
        "provenance": artifacts.provenance(cfg, "bench", "bench/2", "", ("classifier", "osr", "patchcore", "bench",
                                                                          "project.device", "project.threads"),
                                           {"calibration": cal.id, "detector": fit.artifact_id},
                                           split=split),
    }
    return result


BENCH_ALGORITHM = "bench/3"  # 3: a cached step like the others


def bench_key(cfg: Config, split: str, reporter: Reporter | None = None) -> str:
    """What is timed (the calibrated scorer and the classifier under it, the detector) and where (device, threads)."""
    from osd.pipeline.detector import fit_patchcore

    return artifacts.cache_key("bench", BENCH_ALGORITHM, calibrated(cfg, split, reporter=reporter).id,
                               fit_patchcore(cfg, reporter=reporter).artifact_id, cfg.section("bench"),
                               runtime.compute_identity(cfg))


def cached_bench(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> tuple[dict, bool]:
    """The bench of a split: cached on what is timed (the calibrated scorer and the classifier under it,
    the detector), on this device with this many threads; ``bench.json`` and metrics.json show it."""
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    layout = artifacts.Layout(cfg.output_dir)
    key = bench_key(cfg, split, reporter)

    def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        result = bench(cfg, split, reporter)
        return {"result": result}, result["provenance"]

    step = artifacts.cached_step(layout.split(split) / "bench.npz", key, compute, force=force, on_wait=reporter.note)
    result = {**step.payload["result"], "cache_key": key}
    if artifacts.read_json(layout.bench(split)) != artifacts.plain(result):
        artifacts.write_json(layout.bench(split), result)
    artifacts.write_outputs(None, "", layout.metrics(split), "bench", step.payload["result"])
    return result, step.cached

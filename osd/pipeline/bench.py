"""Step ``bench``: latency and throughput of both approaches, stage by stage, warm-up excluded."""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd._version import __version__
from osd.pipeline.detector import stage1_models
from osd.pipeline.job import Job
from osd.pipeline.osr import calibrated
from osd.pipeline.train import load_model, trained
from osd.progress import Reporter, ensure
from osd.records import BenchResult, cached_sections


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


LATENCY_STAGES = ("decode", "classifier_preprocess", "classifier_forward", "mahalanobis",
                  "patchcore_preprocess", "patchcore_features", "nn_search")
ONE_STAGE = ("decode", "classifier_preprocess", "classifier_forward", "mahalanobis")
TWO_STAGE = ("decode", "patchcore_preprocess", "patchcore_features", "nn_search", "classifier_preprocess",
             "classifier_forward")


class _Timed:
    """The split's models on one device, each stage as a function that can be timed on its own."""

    def __init__(self, job: Job, split: str, device, reporter: Reporter):
        cfg = job.cfg
        self.cfg, self.device = cfg, device
        self.cal = calibrated(job, split, reporter=reporter)
        self.scorer, self.blocks = self.cal.payload["scorer"], list(self.cal.payload["blocks"])
        self.tpayload = trained(job, split, reporter=reporter).payload
        self.compute = job.resources.scoring  # predict scores in fp32
        self.model = self.compute.model(load_model(self.tpayload, cfg.classifier.arch))
        detector, self.extractor, self.fit = stage1_models(job, device, reporter)
        self.bank = detector.memory.to(device)
        self.extractor.eval()

    def timed(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        _sync(self.device)
        t = time.perf_counter()
        out = fn(*args)
        _sync(self.device)
        return out, time.perf_counter() - t

    def prep(self, img, size):
        from osd.data.tensors import normalize, pil_to_uint8

        return normalize(self.compute.inputs(pil_to_uint8(img, size).unsqueeze(0)))

    def prep_batch(self, imgs, size):
        import torch

        from osd.data.tensors import normalize, pil_to_uint8

        return normalize(self.compute.inputs(torch.stack([pil_to_uint8(i, size) for i in imgs])))

    def embed(self, x):
        """The classifier's statistics and logits, at the project's precision."""
        with self.compute.autocast():
            return self.model.embed_stages(x)

    def osr_score(self, st):
        from osd.osr.features import stack

        return self.scorer.score_samples(stack({k: st[k].float().cpu().numpy() for k in self.blocks}, self.blocks)[0])

    def nn_score(self, feats):
        from osd.patchcore.features import to_patches

        return self.bank.score_patches(to_patches(feats), feats.shape[2] * feats.shape[3])

    def latency(self, paths: list, warm: int, reporter: Reporter) -> dict[str, list[float]]:
        """Per-stage seconds of single images (batch 1), warm-up runs left out."""
        import torch

        from osd.data.images import load_rgb

        cs, ps = self.cfg.classifier.image_size, self.cfg.patchcore.image_size
        stages: dict[str, list[float]] = {k: [] for k in LATENCY_STAGES}
        with torch.inference_mode(), reporter.task("latency (batch 1)", len(paths)) as task:
            for i, p in enumerate(paths):
                img, t_dec = self.timed(load_rgb, p)
                x, t_cp = self.timed(self.prep, img, cs)
                (st, _), t_cf = self.timed(self.embed, x)
                _, t_m = self.timed(self.osr_score, st)
                xp, t_pp = self.timed(self.prep, img, ps)
                feats, t_pf = self.timed(self.extractor, xp)
                _, t_nn = self.timed(self.nn_score, feats)
                if i >= warm:
                    for k, v in zip(LATENCY_STAGES, (t_dec, t_cp, t_cf, t_m, t_pp, t_pf, t_nn)):
                        stages[k].append(v)
                task.advance(1)
        return stages

    def throughput(self, paths: list) -> tuple[float, float]:
        """Images/s of both approaches on one batch of decoded images (after a warm-up call)."""
        import torch

        from osd.data.images import load_rgb

        cs, ps = self.cfg.classifier.image_size, self.cfg.patchcore.image_size

        def one_stage(imgs):
            st, _ = self.embed(self.prep_batch(imgs, cs))
            return self.osr_score(st)

        def two_stage(imgs):
            return self.nn_score(self.extractor(self.prep_batch(imgs, ps))), self.embed(self.prep_batch(imgs, cs))

        def rate(fn, imgs) -> float:
            fn(imgs)  # warm-up
            _, t = self.timed(fn, imgs)
            return len(imgs) / t

        with torch.inference_mode():
            imgs = [load_rgb(p) for p in paths]
            return rate(one_stage, imgs), rate(two_stage, imgs)


@runtime.scoped
def bench(job: Job, split: str, reporter: Reporter | None = None, key: str = "") -> BenchResult:
    """Per-image latency at batch size 1 (median, p95) and throughput at ``bench.batch_size``."""
    import torch

    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    device = job.resources.setup()
    m = _Timed(job, split, device, reporter)
    paths = [e.path for e in job.manifest(split).test()]
    b, runs, warm = cfg.bench.batch_size, cfg.bench.runs, cfg.bench.warmup
    need = max(runs + warm, b)
    paths = (paths * (need // max(len(paths), 1) + 1))[:need]
    stages = m.latency(paths[: runs + warm], warm, reporter)
    one = [sum(v) for v in zip(*(stages[k] for k in ONE_STAGE))]
    two = [sum(v) for v in zip(*(stages[k] for k in TWO_STAGE))]
    tp_one, tp_two = m.throughput(paths[:b])
    return BenchResult(
        split, str(device), torch.get_num_threads(), platform.processor() or platform.machine(), torch.__version__,
        __version__, runs, warm, b,
        f"{cfg.classifier.arch} @ {cfg.classifier.image_size}px ({m.tpayload['weights']} weights)",
        f"{cfg.patchcore.backbone} @ {cfg.patchcore.image_size}px, bank {tuple(m.bank.bank.shape)}",
        {"latency": _summary(one), "throughput_images_per_s": tp_one,
         "stages": {k: _summary(stages[k]) for k in ONE_STAGE}},
        {"latency": _summary(two), "throughput_images_per_s": tp_two,
         "stages": {k: _summary(stages[k]) for k in TWO_STAGE}},
        _peak_rss_mb(), f"median of {runs} single-image runs after {warm} warm-up runs",
        artifacts.provenance(cfg, "bench", BENCH_ALGORITHM, key, ("classifier", "osr", "patchcore", "bench",
                                                                  "project.device", "project.threads"),
                             {"calibration": m.cal.id, "detector": m.fit.artifact_id}, split=split),
        key)


BENCH_ALGORITHM = "bench/4"  # 4: the payload is the BenchResult record; 3: a cached step like the others


def bench_key(job: Job, split: str, reporter: Reporter | None = None) -> str:
    """What is timed (the calibrated scorer and the classifier under it, the detector) and where (device, threads)."""
    from osd.pipeline.detector import stage1_fit

    cfg = job.cfg
    return artifacts.cache_key("bench", BENCH_ALGORITHM, calibrated(job, split, reporter=reporter).id,
                               stage1_fit(job, reporter=reporter).artifact_id, cfg.section("bench"),
                               job.resources.compute_identity())


def cached_bench(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> BenchResult:
    """The bench of a split: cached on what is timed (the calibrated scorer and the classifier under it,
    the detector), on this device with this many threads; ``bench.json`` and metrics.json show it."""
    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    layout = job.layout
    key = bench_key(job, split, reporter)

    def compute() -> tuple[dict[str, Any], artifacts.Provenance]:
        result = bench(job, split, reporter, key)
        return result.payload(), result.provenance

    step = artifacts.cached_step(layout.bench_record(split), key, compute, force=force, on_wait=reporter.note)
    result = BenchResult.from_payload(step.payload, cached=step.cached)
    readable = {**result.section(), "cache_key": key}
    if artifacts.read_json(layout.bench(split)) != artifacts.plain(readable):
        artifacts.write_json(layout.bench(split), readable)
    artifacts.write_outputs(None, "", layout.metrics(split), "bench", result.section(),
                            others=lambda: cached_sections(layout, split))
    return result

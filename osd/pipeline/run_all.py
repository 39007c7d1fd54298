"""``run-all``: the whole study. PatchCore once; per split train, embed, calibrate, osr, cascade, bench;
then the report. Every step is cached and written atomically, so an interrupted run resumes
after its last finished step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from osd import artifacts
from osd.config import Config
from osd.errors import ConfigError
from osd.progress import Reporter, ensure


def _bench_key(cfg: Config, split: str) -> str:
    from osd.pipeline.detector import fit_patchcore
    from osd.pipeline.osr import calibrate

    # what is timed: the calibrated scorer (and the classifier under it), the detector, on this
    # device with this many threads
    return artifacts.cache_key("bench", "bench/2", calibrate(cfg, split).artifact_id, fit_patchcore(cfg).artifact_id,
                               cfg.section("bench"), cfg.project.device, cfg.project.threads)


def cached_bench(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> tuple[dict, bool]:
    from osd.pipeline.bench import bench

    layout = artifacts.Layout(cfg.output_dir)
    key = _bench_key(cfg, split)
    old = artifacts.read_json(layout.bench(split))
    if not force and old.get("cache_key") == key:
        return old, True
    result = bench(cfg, split, reporter)
    result["cache_key"] = key
    artifacts.write_json(layout.bench(split), result)
    return result, False


def run_all(cfg: Config, splits: list[str] | None = None, force: bool = False,
            reporter: Reporter | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """The study once per seed: PatchCore, then every split's steps, then one report over all runs."""
    from osd.pipeline.cascade import run_cascade
    from osd.pipeline.detector import fit_patchcore
    from osd.pipeline.osr import calibrate, evaluate
    from osd.pipeline.train import embed, train
    from osd.report.build import build_report

    reporter = ensure(reporter)
    splits = splits or cfg.split_names
    for s in splits:
        if s not in cfg.split_names:
            raise ConfigError(f"--splits: unknown split {s!r}; choose from {', '.join(cfg.split_names)}")
    seeds = cfg.study_seeds(seeds)
    two_stage = bool(cfg.normal.severstal_root or cfg.normal.folder)
    plan: list[tuple[str, int, str, Callable[[], Any]]] = []
    for seed in seeds:
        c = cfg.for_seed(seed)
        if two_stage:
            plan.append(("-", seed, "patchcore fit", lambda c=c: fit_patchcore(c, force=force, reporter=reporter)))
        for s in splits:
            plan += [
                (s, seed, "train", lambda s=s, c=c: train(c, s, force=force, reporter=reporter)),
                (s, seed, "embed", lambda s=s, c=c: embed(c, s, force=force, reporter=reporter)),
                (s, seed, "calibrate", lambda s=s, c=c: calibrate(c, s, force=force, reporter=reporter)),
                (s, seed, "osr", lambda s=s, c=c: evaluate(c, s, reporter=reporter)),
            ]
            if two_stage:
                plan += [
                    (s, seed, "cascade", lambda s=s, c=c: run_cascade(c, s, force=force, reporter=reporter)),
                    (s, seed, "bench", lambda s=s, c=c: cached_bench(c, s, force=force, reporter=reporter)),
                ]
    steps = []
    start = time.perf_counter()
    with reporter.task("study", len(plan) + 1) as task:
        for split, seed, step, fn in plan:
            t = time.perf_counter()
            result = fn()
            cached = result[1] if isinstance(result, tuple) else getattr(result, "cached", None)
            if step == "cascade":
                cached = result.cached_stage1
            steps.append({"split": split, "seed": seed, "step": step, "seconds": time.perf_counter() - t,
                          "cached": cached})
            task.advance(1, split=split, seed=seed, step=step, elapsed=f"{time.perf_counter() - start:.0f}s")
        t = time.perf_counter()
        layout = artifacts.Layout(cfg.output_dir)
        key = artifacts.cache_key("report", splits, seeds, cfg.to_dict())
        previous = artifacts.read_json(layout.root / "report.json")
        # Nothing upstream changed and the report exists: keep it (``osd report`` rebuilds it on demand).
        reuse = (not force and all(s["cached"] for s in steps) and previous.get("cache_key") == key
                 and (layout.root / "report.html").is_file())
        report = previous["report"] if reuse else build_report(cfg, splits, seeds)
        if not reuse:
            artifacts.write_json(layout.root / "report.json", {"cache_key": key, "report": report})
        steps.append({"split": "-", "seed": "-", "step": "report", "seconds": time.perf_counter() - t,
                      "cached": reuse})
        task.advance(1, step="report")
    return {"steps": steps, "seconds": time.perf_counter() - start, "report": report, "two_stage": two_stage,
            "seeds": seeds}

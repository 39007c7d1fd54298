"""The study's grid of (split, seed) jobs, run in order, on a local process pool, or on Dask.

Every job is idempotent: it runs the cached steps of one split for one seed, so a grid that is
submitted again only computes what is missing (a killed worker's job, say). The shared
dependency of a seed's jobs, its PatchCore fit, is a job of its own, first in the queue. Artifacts live
under the project's ``outputs/``: on a cluster that folder must be on a filesystem every worker
sees. Results do not depend on where a job ran: each job's randomness comes from its seed.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from osd.config import Config
from osd.errors import ConfigError, OsdError, OsdWarning
from osd.progress import Reporter, ensure
from osd.types import JsonObject

if TYPE_CHECKING:
    from osd.pipeline.job import Job


@dataclass(frozen=True)
class Task:
    """One unit of the grid: a seed's PatchCore fit, a (split, seed) job or a seed's detection study."""

    kind: str  # "patchcore" | "prefix" | "split" | "detection"
    seed: int
    split: str = "-"

    @property
    def name(self) -> str:
        if self.kind == "detection":
            return f"detection study (seed {self.seed})"
        if self.kind == "prefix":
            return "frozen blocks' output (every split and seed)"
        return f"patchcore fit (seed {self.seed})" if self.kind == "patchcore" else f"split {self.split}, seed {self.seed}"


@dataclass(frozen=True)
class StepRun:
    """One step as a job ran it: found in the cache or computed, and how long it took."""

    split: str
    seed: int | str  # "-" for the report, which spans the seeds
    step: str
    seconds: float
    cached: bool

    def to_dict(self) -> JsonObject:
        return asdict(self)


@dataclass(frozen=True)
class JobRun:
    """One task of the grid as it ran: its steps, or the one line it failed with (never raised), the
    process it ran in; ``warnings``: a worker's warnings, shown once by the caller."""

    job: str
    split: str
    seed: int
    steps: list[StepRun] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    pid: int | None = None
    traceback: str | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def failed(cls, task: Task, error: str) -> JobRun:
        return cls(task.name, task.split, task.seed, error=error)

    def to_dict(self) -> JsonObject:
        return {**asdict(self), "steps": [s.to_dict() for s in self.steps]}


def _timed(job: Job, split: str, plan: list[tuple[str, Callable[[], Any]]]) -> list[StepRun]:
    steps = []
    for step, fn in plan:
        t = time.perf_counter()
        result = fn()
        steps.append(StepRun(split, job.seed, step, time.perf_counter() - t, result.cached))
    return steps


def split_steps(job: Job, split: str, two_stage: bool, force: bool = False,
                reporter: Reporter | None = None) -> list[StepRun]:
    """Every step of one split for the job's seed, in order; each cached."""
    from osd.pipeline.bench import cached_bench
    from osd.pipeline.cascade import run_cascade
    from osd.pipeline.osr import calibrate, evaluate
    from osd.pipeline.train import embed, train

    plan: list[tuple[str, Callable[[], Any]]] = [
        ("train", lambda: train(job, split, force=force, reporter=reporter)),
        ("embed", lambda: embed(job, split, force=force, reporter=reporter)),
        ("calibrate", lambda: calibrate(job, split, force=force, reporter=reporter)),
        ("osr", lambda: evaluate(job, split, reporter=reporter)),
    ]
    if two_stage:
        plan += [("cascade", lambda: run_cascade(job, split, force=force, reporter=reporter)),
                 ("bench", lambda: cached_bench(job, split, force=force, reporter=reporter))]
    if two_stage and job.cfg.normal.in_domain:  # the line's own normal images: the normal-class variant, 3 outcomes
        from osd.config import NORMAL_CLASS_SUFFIX
        from osd.pipeline.outcomes import three_outcomes

        variant = split + NORMAL_CLASS_SUFFIX
        plan += [("train (normal class)", lambda: train(job, variant, force=force, reporter=reporter)),
                 ("embed (normal class)", lambda: embed(job, variant, force=force, reporter=reporter)),
                 ("calibrate (normal class)", lambda: calibrate(job, variant, force=force, reporter=reporter)),
                 ("outcomes", lambda: three_outcomes(job, split, force=force, reporter=reporter))]
    return _timed(job, split, plan)


def _own_gpu(cfg: Config, slot: int) -> None:
    """In a worker process: with several GPUs, job ``slot`` runs on GPU ``slot % count``."""
    import torch

    if cfg.project.device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(slot % torch.cuda.device_count())


def run_job(cfg: Config, task: Task, two_stage: bool, force: bool = False, threads: int = 0,
            reporter: Reporter | None = None, slot: int | None = None, workers: int | None = None) -> JobRun:
    """One task (``cfg`` of the study; the task runs with its seed and share, resolved once into a
    :class:`~osd.pipeline.job.Job`), in whatever process runs it;
    an error comes back as one line, never raised.

    ``slot`` (worker processes only) spreads jobs over the GPUs of a machine that has several;
    ``threads`` and ``workers`` (when given) are the job's share of the machine.
    """
    share = {"project.threads": threads} if threads else {}
    cfg = cfg.for_seed(task.seed, **share, **({} if workers is None else {"project.workers": workers}))
    if slot is None:
        return _run_job(cfg, task, two_stage, force, reporter, slot)
    # a worker process: its warnings travel back as lines, shown once by the caller like its own
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = _run_job(cfg, task, two_stage, force, reporter, slot)
    return replace(record, warnings=list(dict.fromkeys(
        str(w.message) if issubclass(w.category, OsdWarning)
        else f"{w.category.__name__}: {(str(w.message).strip().splitlines() or [''])[0][:160]}" for w in caught)))


def _run_job(cfg: Config, task: Task, two_stage: bool, force: bool, reporter: Reporter | None,
             slot: int | None) -> JobRun:
    from osd.pipeline.detector import stage1_fit
    from osd.pipeline.job import Job

    t0 = time.perf_counter()
    try:
        if slot is not None:
            _own_gpu(cfg, slot)
        job = Job.of(cfg)  # the one resolution of this (project, seed) job: every step reads it
        if task.kind == "detection":
            steps = detection_steps(job, force, reporter)
        elif task.kind == "prefix":
            from osd.pipeline.prefix import prefix_features

            steps = _timed(job, "-", [("frozen blocks (shared)", lambda: prefix_features(job, force=force,
                                                                                        reporter=reporter))])
        elif task.kind == "patchcore":
            steps = _timed(job, "-", [("patchcore fit", lambda: stage1_fit(job, force=force, reporter=reporter))])
        else:
            steps = split_steps(job, task.split, two_stage, force, reporter)
        return JobRun(task.name, task.split, task.seed, steps, None, time.perf_counter() - t0, os.getpid())
    except Exception as exc:  # noqa: BLE001 - a failed job is reported; the others go on
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = None if isinstance(exc, OsdError) else traceback.format_exc(limit=5)
        return JobRun(task.name, task.split, task.seed, [], f"{type(exc).__name__}: {line}" if detail else line,
                      time.perf_counter() - t0, os.getpid(), detail)


def detection_steps(job: Job, force: bool = False, reporter: Reporter | None = None) -> list[StepRun]:
    """The detection study of the job's seed: its PatchCore fit, then the study; each cached."""
    from osd.pipeline.detection import detection
    from osd.pipeline.detector import stage1_fit

    return _timed(job, "-", [("patchcore fit", lambda: stage1_fit(job, force=force, reporter=reporter)),
                             ("detection", lambda: detection(job, force=force, reporter=reporter))])


def plan_jobs(cfg: Config, splits: list[str], seeds: list[int], two_stage: bool) -> tuple[list[Task], list[Task]]:
    """(shared dependencies, the (split, seed) jobs); a detection project: one job per seed."""
    if cfg.project.study == "detection":
        return [], [Task("detection", s) for s in seeds]
    deps = [Task("patchcore", s) for s in seeds] if two_stage else []
    if cfg.classifier.train_blocks >= 0:  # the frozen blocks' output, once for every split and seed
        deps.insert(0, Task("prefix", seeds[0]))
    return deps, [Task("split", s, sp) for s in seeds for sp in splits]


def _threads_per_job(cfg: Config, jobs: int) -> int:
    from osd import runtime

    if cfg.project.threads:
        return cfg.project.threads
    return max(1, runtime.cores() // max(jobs, 1))  # the machine is divided, not oversubscribed


def _dask_job(cfg: Config, job: Task, two_stage: bool, force: bool, slot: int = 0) -> JobRun:
    """On a Dask worker: as many torch threads as the worker has (not every core of its machine)."""
    try:
        from distributed import get_worker

        threads = cfg.project.threads or int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        threads = cfg.project.threads
    return run_job(cfg, job, two_stage, force, threads, slot=slot or 0)


def run_grid(cfg: Config, splits: list[str], seeds: list[int], two_stage: bool, jobs: int = 1,
             scheduler: str | None = None, force: bool = False, reporter: Reporter | None = None
             ) -> list[JobRun]:
    """Run the shared dependencies, then the (split, seed) jobs; return one record per job.

    ``jobs = 1`` and no scheduler: in this process, in order, with each step's own progress.
    ``jobs > 1``: a local process pool, torch threads divided between the workers.
    ``scheduler``: a Dask distributed scheduler address (``tcp://host:8786``) or a ``Client``.
    """
    reporter = ensure(reporter)
    deps, grid = plan_jobs(cfg, splits, seeds, two_stage)
    if scheduler is not None:
        return _run_dask(cfg, deps, grid, two_stage, force, scheduler, reporter)
    if jobs > 1:
        return _run_pool(cfg, deps, grid, two_stage, force, jobs, reporter)
    out = []
    with reporter.task("study", len(deps) + len(grid)) as task:
        for job in [*deps, *grid]:
            rec = run_job(cfg, job, two_stage, force, reporter=reporter)
            if rec.error:
                reporter.note(f"failed: {job.name}: {rec.error}")
            out.append(rec)
            task.advance(1, job=job.name, failed=sum(r.error is not None for r in out))
    return out


def _run_dask(cfg: Config, deps: list[Task], grid: list[Task], two_stage: bool, force: bool, scheduler: Any,
              reporter: Reporter) -> list[JobRun]:
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError('--scheduler needs Dask: pip install "osd[cluster]"') from None
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    slots = iter(range(10**9))

    def submit(job: Task) -> Any:
        return client.submit(_dask_job, cfg, job, two_stage, force, next(slots),
                             key=f"osd-{job.kind}-{job.split}-{job.seed}-{time.time_ns()}", pure=False)

    def result_of(fut: Any, job: Task) -> JobRun:
        try:
            return fut.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker, a cancelled task
            return JobRun.failed(job, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    try:
        return _run_jobs(deps, grid, submit, result_of, _dask_wait, reporter)
    finally:
        if not isinstance(scheduler, Client):
            client.close()


def _run_pool(cfg: Config, deps: list[Task], grid: list[Task], two_stage: bool, force: bool, jobs: int,
              reporter: Reporter) -> list[JobRun]:
    import multiprocessing

    from osd import runtime

    threads = _threads_per_job(cfg, jobs)
    workers = runtime.decode_workers(cfg.project, threads, jobs)  # jobs x (threads + workers) <= cores
    if not cfg.project.threads:
        warnings.warn(f"--jobs {jobs}: each job trains with {threads} torch thread(s), a sequential run with "
                      "torch's default; training arithmetic depends on the thread count, so set project.threads "
                      "for results identical to a sequential run", OsdWarning, stacklevel=3)
    # spawn: a clean interpreter per worker (no forked torch thread pools)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        slots = iter(range(10**9))

        def submit(job: Task) -> Future:
            return pool.submit(run_job, cfg, job, two_stage, force, threads, None, next(slots), workers)

        def result_of(fut: Future, job: Task) -> JobRun:
            try:
                return fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
                return JobRun.failed(job, f"worker died: {type(exc).__name__}: {exc}")

        return _run_jobs(deps, grid, submit, result_of, _local_wait, reporter)


def _local_wait(futures: set) -> tuple[set, set]:
    done, pending = wait(futures, return_when=FIRST_COMPLETED)
    return set(done), set(pending)


def _dask_wait(futures: set) -> tuple[set, set]:
    from distributed import wait as dask_wait

    done, pending = dask_wait(list(futures), return_when="FIRST_COMPLETED")
    return set(done), set(pending)


def _run_jobs(deps: list[Task], grid: list[Task], submit: Callable[[Task], Any], result_of: Callable[[Any, Task], JobRun],
              wait_some: Callable[[set], tuple[set, set]], reporter: Reporter) -> list[JobRun]:
    """Every job at once, the dependencies first in the queue: a split's training needs no PatchCore
    fit, so no worker idles while a seed's fit runs; a job that reaches its cascade while the fit is
    running elsewhere waits on the fit's lock (and one whose fit has not started computes it, the
    queued fit then finds it cached). Progress of the whole grid: done / running / failed, with the
    elapsed time and an estimate of what is left."""
    records: list[JobRun] = []
    total = len(deps) + len(grid)
    start = time.perf_counter()
    with reporter.task("grid", total) as task:
        futures = {submit(job): job for job in [*deps, *grid]}
        pending = set(futures)
        while pending:
            done, pending = wait_some(pending)
            for fut in done:
                job = futures[fut]
                rec = result_of(fut, job)
                records.append(replace(rec, warnings=[]))
                for line in rec.warnings:
                    warnings.warn(f"{job.name}: {line}", OsdWarning, stacklevel=2)
                if rec.error:
                    reporter.note(f"failed: {job.name}: {rec.error}")
                n = len(records)
                elapsed = time.perf_counter() - start
                task.advance(1, done=n, running=len(pending), failed=sum(bool(r.error) for r in records),
                             eta=f"{elapsed / n * (total - n):.0f}s")
    return records

"""Issue 14: the (split, seed) grid on local processes and on a Dask cluster gives the sequential answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from osd import config
from osd.cli.app import app

runner = CliRunner()
ONE_THREAD = ["--set", "project.threads=1"]  # the same arithmetic in every process: bit-identical numbers


def run_all(project: Path, out: str, *extra: str, splits: str = "a,c") -> dict:
    r = runner.invoke(app, ["run-all", "-p", str(project), "--splits", splits, "--seeds", "0,1", "--json",
                            "--set", f"project.output_dir={out}", *ONE_THREAD, *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_jobs_2_gives_the_sequential_summary_and_reruns_only_what_is_missing(tiny_project: Path):
    run_all(tiny_project, "seq", splits="c")  # one split x two seeds: two jobs for the two workers
    par = run_all(tiny_project, "par", "--jobs", "2", splits="c")
    assert (tiny_project / "seq" / "summary.csv").read_text() == (tiny_project / "par" / "summary.csv").read_text()
    assert par["jobs"] == 2 and not par["failed"]
    # a job whose artifacts are gone (a killed worker) is re-run; nothing else is recomputed
    for f in (tiny_project / "par" / "seed_1" / "split_c").rglob("*.npz"):
        f.unlink()
    again = run_all(tiny_project, "par", "--jobs", "2", splits="c")
    recomputed = {(s["split"], s["seed"]) for s in again["steps"] if s["cached"] is False and s["split"] != "-"}
    assert recomputed == {("c", 1)}
    assert (tiny_project / "seq" / "summary.csv").read_text() == (tiny_project / "par" / "summary.csv").read_text()


def test_a_failed_job_is_reported_and_the_others_go_on(tiny_project: Path, monkeypatch):
    from osd import study as run_all_module
    from osd.pipeline import grid

    real = grid.split_steps

    def flaky(cfg, split, *a, **k):
        if split == "c":
            raise RuntimeError("simulated failure\nwith a second line")
        return real(cfg, split, *a, **k)

    monkeypatch.setattr(grid, "split_steps", flaky)
    cfg = config.load(tiny_project, ["project.threads=1"])
    result = run_all_module.run_all(cfg, ["a", "c"], seeds=[0])
    assert result.to_dict()["failed"] == [{"job": "split c, seed 0", "split": "c", "seed": 0,
                                           "error": "RuntimeError: simulated failure"}]
    assert {r["split"] for r in result.report.rows} >= {"a"}


def test_a_local_dask_cluster_runs_the_grid(tiny_project: Path):
    distributed = pytest.importorskip("distributed")
    run_all(tiny_project, "seq", splits="a")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        res = run_all(tiny_project, "dask", "--scheduler", cluster.scheduler_address, splits="a")
    assert not res["failed"] and res["scheduler"].startswith("tcp://127.0.0.1")
    assert (tiny_project / "seq" / "summary.csv").read_text() == (tiny_project / "dask" / "summary.csv").read_text()


def test_a_worker_s_warnings_come_back_as_one_line_each(tiny_project: Path, monkeypatch):
    """In a worker process warnings would print with file, line and source; they travel back as text
    and the caller shows them once each, like its own."""
    import warnings

    from osd.errors import OsdWarning
    from osd.pipeline import grid

    def noisy(cfg, split, *a, **k):
        for _ in range(3):
            warnings.warn("tau: set on only 4 scores", OsdWarning, stacklevel=1)
        warnings.warn("a library says\nwith a second line", UserWarning, stacklevel=1)
        return []

    monkeypatch.setattr(grid, "split_steps", noisy)
    cfg = config.load(tiny_project)
    rec = grid.run_job(cfg, grid.Task("split", 0, "a"), False, slot=0)  # as a worker runs it
    assert rec.warnings == ["tau: set on only 4 scores", "UserWarning: a library says"]
    from osd.progress import NullReporter

    class Done:  # a finished future holding the worker's record
        def __init__(self, record):
            self.record = record

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grid._run_jobs([], [grid.Task("split", 0, "a")], lambda job: Done(rec), lambda fut, job: fut.record,
                        lambda pending: (set(pending), set()), NullReporter())
    assert [str(w.message) for w in caught] == ["split a, seed 0: tau: set on only 4 scores",
                                                "split a, seed 0: UserWarning: a library says"]
    assert all(issubclass(w.category, OsdWarning) for w in caught)

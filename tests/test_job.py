"""Issue 41: the project is resolved once per (project, seed) job. Counted on the functions themselves
(a profile hook sees every call, whatever name a module imported them under), during a warm grid job of
the one-stage + cascade study with the line's own normals (the normal-class variant too) and a warm
detection study."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from osd import config, runtime
from osd.cli.app import app
from osd.config import Config
from osd.pipeline import data, grid
from osd.pipeline.job import Job

COUNTED: dict[str, Callable] = {
    "resolution (runtime.resources)": runtime.resources,
    "data indexing (neu_index)": data.neu_index,
    "normal images (normal_data)": data.normal_data,
    "split making (split_manifest)": data.split_manifest,
    "Config.replace": Config.replace,
}


@contextmanager
def counting() -> Iterator[Counter]:
    codes = {fn.__code__: name for name, fn in COUNTED.items()}
    calls: Counter = Counter()

    def hook(frame, event, arg):  # noqa: ANN001
        if event == "call" and frame.f_code in codes:
            calls[codes[frame.f_code]] += 1

    old = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield calls
    finally:
        sys.setprofile(old)


def test_a_warm_grid_job_resolves_the_project_once(tiny_project: Path):
    text = (tiny_project / "osd.toml").read_text()
    (tiny_project / "osd.toml").write_text(text.replace("[normal]", "[normal]\nin_domain = true"))
    cfg = config.load(tiny_project)
    assert cfg.normal.in_domain
    for task in (grid.Task("patchcore", 0), grid.Task("split", 0, "a")):  # computed once, cold
        assert grid.run_job(cfg, task, two_stage=True, threads=1).error is None
    with counting() as calls:
        rec = grid.run_job(cfg, grid.Task("split", 0, "a"), two_stage=True, threads=1)  # warm: every step cached
    assert rec.error is None and all(s.cached for s in rec.steps)
    assert [s.step for s in rec.steps][-1] == "outcomes"  # the variant and the three outcomes ran too
    assert calls["resolution (runtime.resources)"] == 1
    assert calls["data indexing (neu_index)"] == 1
    assert calls["normal images (normal_data)"] == 1
    assert calls["split making (split_manifest)"] == 2  # a and a+normal: each split once
    assert calls["Config.replace"] == 1  # the job's share of the threads (Config.for_seed)


def test_a_warm_detection_study_resolves_the_project_once(tmp_path: Path):
    from tests.test_detection import TINY, parts

    good, bad = parts(tmp_path, good=24, bad={"crack": 8})
    p = tmp_path / "det"
    assert CliRunner().invoke(app, ["init", str(p), "--neu", str(bad), "--normal", str(good)]).exit_code == 0
    cfg = config.load(p, [s for s in TINY if s != "--set"])
    assert cfg.project.study == "detection"
    assert grid.run_job(cfg, grid.Task("detection", 0), two_stage=True).error is None
    with counting() as calls:
        rec = grid.run_job(cfg, grid.Task("detection", 0), two_stage=True)
    assert rec.error is None and [s.cached for s in rec.steps] == [True, True]
    assert calls["resolution (runtime.resources)"] <= 1
    assert calls["normal images (normal_data)"] == 1
    assert calls["Config.replace"] == 0  # the project's own seed: no copy of the settings


def test_a_job_hands_out_what_it_resolved_and_never_resolves_it_again(tiny_project: Path):
    job = Job.of(config.load(tiny_project))
    with counting() as calls:
        first = job.manifest("A")
        assert job.manifest("a") is first  # the name as osd.toml spells it: the same manifest
        assert job.resources is job.resources and job.normals is job.normals
    assert calls["split making (split_manifest)"] == 1 and calls["resolution (runtime.resources)"] == 1
    with pytest.raises(Exception, match="unknown split"):
        job.manifest("zz")

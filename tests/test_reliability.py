"""Issue 13: bad inputs and faults end in one clear line; long runs survive being killed."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from osd import artifacts, config
from osd.cli.app import app
from osd.pipeline.job import Job

runner = CliRunner()


def one_line_error(args: list[str], *needles: str) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert err, r.output
    for n in needles:
        assert n in r.output, r.output
    return r.output


@pytest.mark.parametrize("settings, needle", [
    (["classifier.arch=vit_b_16", "classifier.image_size=32"], "classifier.arch = 'vit_b_16' cannot run"),
    (["classifier.arch=no_such_model"], "classifier.arch"),
])
def test_a_classifier_that_cannot_run_is_one_line(tiny_project: Path, settings: list[str], needle: str):
    sets = [a for s in settings for a in ("--set", s)]
    one_line_error(["train", "-p", str(tiny_project), *sets], needle)


@pytest.mark.parametrize("backbone", ["vit_b_16", "mobilenet_v3_small"])
def test_a_patchcore_backbone_without_patch_layers_is_one_line_at_once(tiny_project: Path, backbone: str):
    start = time.perf_counter()
    one_line_error(["patchcore", "fit", "-p", str(tiny_project), "--set", f"patchcore.backbone={backbone}"],
                   "patchcore.backbone")
    assert time.perf_counter() - start < 30  # no data was read, no model built for real


def test_output_dir_that_is_a_file_is_one_line(tiny_project: Path):
    (tiny_project / "outfile").write_text("x")
    one_line_error(["train", "-p", str(tiny_project), "--set", "project.output_dir=outfile"], "cannot write")


@pytest.mark.parametrize("content", [b"\x00\x01random bytes" * 50, pickle.dumps({"a": Path("x")})])
def test_a_bad_weights_file_is_one_line_that_never_advises_unsafe_loading(tiny_project: Path, content: bytes):
    (tiny_project / "bad.pth").write_bytes(content)
    out = one_line_error(["train", "-p", str(tiny_project), "--set", "classifier.weights=bad.pth"], "bad.pth")
    assert "weights_only=False" not in out


class _Files:
    """Images on disk for the training loop (a thin wrapper that can take the first n)."""

    def __init__(self, paths, labels, workers):
        from osd.data.stream import Images

        self.paths, self.labels, self.workers = paths, labels, workers
        self.images = Images(paths, labels, 32, workers)

    def __len__(self):
        return len(self.images)

    def batches(self, index_batches):
        return self.images.batches(index_batches)

    def head(self, n):
        return _Files(self.paths[:n], self.labels[:n], self.workers)


def _image_files(folder: Path, n: int, workers: int):
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    labels = [i % 3 for i in range(n)]
    return _Files(paths, labels, workers), labels


def test_streamed_training_does_not_depend_on_the_worker_count(tiny_project: Path):
    """Images decoded in 0 or 2 worker processes: the same seeded run, bit for bit."""
    from osd import config
    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier
    from osd.models.training import fit

    # batches of 2: enough batches (>= MIN_BATCHES_FOR_WORKERS) for the workers to be used
    rec = config.load(tiny_project, ["classifier.epochs=2", "classifier.batch_size=2"]).classifier
    runs = []
    for workers in (0, 2):
        x, _ = _image_files(tiny_project / "imgs", 20, workers)
        torch.manual_seed(0)
        m = EmbeddingClassifier(build("resnet18", "none"), 3)
        runs.append(fit(m, x, x.head(6), rec, torch.device("cpu"), torch.Generator().manual_seed(5)))
    from osd.data.stream import MIN_BATCHES_FOR_WORKERS

    assert len(x) // rec.batch_size >= MIN_BATCHES_FOR_WORKERS  # the workers were really used
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]
    for k, v in runs[0].state_dict.items():
        assert torch.equal(v, runs[1].state_dict[k]), k


def test_training_resumes_bit_identically_after_a_kill(tiny_project: Path):
    from osd import config
    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier
    from osd.models.training import fit

    cfg = config.load(tiny_project, ["classifier.epochs=4"])
    rec = cfg.classifier
    x, y = _image_files(tiny_project / "imgs", 24, 1)

    def model():
        torch.manual_seed(0)
        return EmbeddingClassifier(build("resnet18", "none"), 3)

    torch.manual_seed(1)
    whole = fit(model(), x, x.head(8), rec, torch.device("cpu"), torch.Generator().manual_seed(5))

    class Killed(Exception):
        pass

    def checkpoint(state):
        artifacts.save(tiny_project / "ck.npz", "k", state)
        if state["epoch"] == 2:
            raise Killed

    torch.manual_seed(1)
    with pytest.raises(Killed):
        fit(model(), x, x.head(8), rec, torch.device("cpu"), torch.Generator().manual_seed(5),
            checkpoint=checkpoint)
    torch.manual_seed(123)  # the resumed process starts with other global RNG state
    resumed = fit(model(), x, x.head(8), rec, torch.device("cpu"), torch.Generator().manual_seed(99),
                  resume=artifacts.load(tiny_project / "ck.npz", "k"))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.best_epoch == whole.best_epoch
    for k, v in whole.state_dict.items():
        assert torch.equal(v, resumed.state_dict[k]), k


def test_a_checkpoint_left_by_a_killed_run_is_resumed_by_train(tiny_project: Path, monkeypatch):
    from osd import config
    from osd.models import training
    from osd.pipeline.train import train

    cfg = config.load(tiny_project, ["classifier.epochs=3"])
    real = training.fit

    def killed_after_epoch_1(*a, checkpoint=None, **k):
        def ck(state):
            checkpoint(state)
            raise KeyboardInterrupt
        return real(*a, checkpoint=ck, **k)

    monkeypatch.setattr(training, "fit", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(Job.of(cfg), "a")
    ck = tiny_project / "outputs" / "split_a" / "classifier" / "checkpoint.npz"
    assert ck.is_file()
    monkeypatch.setattr(training, "fit", real)
    notes = []

    class Rep:
        def task(self, *a, **k):
            from osd.progress import NullReporter
            return NullReporter().task(*a, **k)

        def note(self, m):
            notes.append(m)

    result = train(Job.of(cfg), "a", reporter=Rep())
    assert any("resuming after epoch 1" in n for n in notes) and len(result.history) == 3
    assert not ck.exists()


def test_a_second_process_waits_for_the_first_and_reuses_its_work(tmp_path: Path):
    target = tmp_path / "model.npz"
    events = []
    holding, release = threading.Event(), threading.Event()

    def first():
        with artifacts.exclusive(target):
            events.append("first in")
            holding.set()
            release.wait(10)
            artifacts.write_text(target, "done")
            events.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert holding.wait(10)

    def waiting(message: str) -> None:
        events.append(message)
        release.set()  # the second one is blocked on the lock now: let the first one finish

    with artifacts.exclusive(target, waiting):
        events.append("second in: " + target.read_text())
    t.join()
    assert events[0] == "first in" and "another osd process" in events[1]
    assert events[2:] == ["first out", "second in: done"]


def test_library_calls_give_back_threads_and_global_generators(tiny_project):
    """project.threads and seeding apply inside osd's calls only; the caller's state comes back."""
    import random

    import numpy as np
    import torch

    from osd import config
    from osd.pipeline.cascade import stage1_scores
    from osd.pipeline.osr import calibrate
    from osd.pipeline.predict import predict

    cfg = config.load(tiny_project).replace(**{"project.threads": 1})
    before_threads = torch.get_num_threads()
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    calibrate(Job.of(cfg), "a")  # trains and embeds first
    stage1_scores(Job.of(cfg), "a")  # fits PatchCore first
    rows = predict(Job.of(cfg), "a", [np.full((32, 32), 120, dtype=np.uint8)])
    assert len(rows) == 1
    assert torch.get_num_threads() == before_threads
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_a_retrain_says_why_the_cached_classifier_does_not_serve(tiny_project: Path):
    """Minutes of training never start unexplained: another thread count or another setting is named."""
    from osd.pipeline.train import train

    notes: list[str] = []

    class Rep:
        def task(self, *a, **k):
            from osd.progress import NullReporter
            return NullReporter().task(*a, **k)

        def note(self, m):
            notes.append(m)

    cfg = config.load(tiny_project).replace(**{"project.threads": 1, "classifier.epochs": 1})
    train(Job.of(cfg), "a", reporter=Rep())
    assert not any("training anew" in n for n in notes)  # nothing on disk: nothing to explain
    train(Job.of(cfg.replace(**{"project.threads": 2})), "a", reporter=Rep())
    assert any("training anew" in n and "threads 1 (now 2)" in n for n in notes), notes
    notes.clear()
    train(Job.of(cfg.replace(**{"project.threads": 2, "classifier.epochs": 2})), "a", reporter=Rep())
    assert any("classifier.epochs = 1" in n for n in notes), notes

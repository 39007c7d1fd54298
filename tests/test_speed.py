"""Speed settings that must not change what is computed: precision, early stopping, workers, --jobs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from osd import precision as prec
from osd.precision import Compute, resolve_precision


@pytest.mark.parametrize("native", [True, False])
def test_auto_trains_in_fp32_until_bf16_is_shown_non_inferior(monkeypatch, native: bool):
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, "classifier") == "fp32"  # not shown non-inferior (issue 39, 10b)
    assert resolve_precision("auto", cpu, "patchcore") == "fp32"  # measured: in-domain AUROC moved by 0.012
    assert resolve_precision("fp32", cpu, "classifier") == "fp32"
    if native:
        assert resolve_precision("bf16", cpu, "classifier") == "bf16"  # an explicit choice trains in it
    else:
        with pytest.raises(ValueError, match="emulates"):
            resolve_precision("bf16", cpu)
    with pytest.raises(ValueError, match="accelerators"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="one of"):
        resolve_precision("half", cpu)


def test_a_bf16_training_still_scores_in_fp32(monkeypatch):
    from osd import runtime
    from osd.config import Config

    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    res = runtime.resources(Config().replace(**{"project.precision": "bf16", "project.device": "cpu"}).project)
    assert res.classifier.precision == "bf16"  # training
    assert res.scoring.precision == "fp32" and res.patchcore.precision == "fp32"  # every score meets a threshold
    assert res.compute("classifier").precision == "fp32" and res.precision_identity()["precision"] == "fp32"
    assert res.compute_identity()["precision"] == "bf16"  # the training's cache key keeps its own precision


def test_an_impossible_precision_is_one_error_naming_the_setting(monkeypatch):
    from osd import runtime
    from osd.config import Config
    from osd.errors import DeviceError

    cfg = Config().replace(**{"project.precision": "fp16", "project.device": "cpu"})
    with pytest.raises(DeviceError, match=r"project.precision = fp16"):
        runtime.resources(cfg.project)


@pytest.mark.skipif(not prec.cpu_has_native_bf16(), reason="this CPU has no bf16 hardware")
def test_a_bf16_forward_gives_float32_outputs_close_to_fp32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.rand(4, 3, 16, 16)
    ref = model(x)
    c = Compute.on("cpu", "bf16")
    assert c.channels_last and c.identity() != Compute.on("cpu", "fp32").identity()
    with torch.inference_mode(), c.autocast():
        raw = c.model(model)(c.inputs(x))
    out = c.output(raw)
    assert raw.dtype == torch.bfloat16 and out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=0.05) and not torch.equal(out, ref)


def _images(root: Path, n: int, workers: int = 0):
    from osd.data.stream import Images

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return Images(paths, [i % 2 for i in range(n)], 16, workers=workers)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize("patience, runs", [(2, 3), (0, 6)])
def test_early_stopping_stops_after_patience_epochs_without_a_better_one(tmp_path: Path, patience: int, runs: int):
    from osd.config import ClassifierSection
    from osd.models.training import fit

    train, select = _images(tmp_path, 8), _images(tmp_path, 4)
    # a learning rate too small to change a float32 weight: every epoch is as good as the first
    recipe = ClassifierSection(epochs=6, patience=patience, batch_size=4, lr=1e-30, optimizer="sgd", augment=False)
    out = fit(_tiny_model(), train, select, recipe, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert out.best_epoch == 1 and out.epochs_run == runs and len(out.history) == runs
    assert out.stopped_early == (runs < recipe.epochs)


def test_a_run_resumed_after_early_stopping_was_checkpointed_matches(tmp_path: Path):
    from osd.config import ClassifierSection
    from osd.models.training import fit

    train, select = _images(tmp_path, 8), _images(tmp_path, 4)
    recipe = ClassifierSection(epochs=4, patience=2, batch_size=4, lr=0.01, augment=True)
    saved: list[dict] = []
    whole = fit(_tiny_model(), train, select, recipe, torch.device("cpu"), torch.Generator().manual_seed(0),
                checkpoint=lambda c: saved.append(copy.deepcopy(c)))  # as saving to disk would
    resumed = fit(_tiny_model(), train, select, recipe, torch.device("cpu"), torch.Generator().manual_seed(0),
                  resume=saved[0])
    assert resumed.epochs_run == whole.epochs_run and resumed.best_epoch == whole.best_epoch
    assert all(torch.equal(resumed.state_dict[k], whole.state_dict[k]) for k in whole.state_dict)


def test_persistent_decoding_workers_give_the_same_batches_pass_after_pass(tmp_path: Path):
    from osd.data import stream

    many = [[i, i + 1] for i in range(0, 16, 2)]
    assert len(many) >= stream.MIN_BATCHES_FOR_WORKERS
    with _images(tmp_path, 16, workers=1) as pooled:
        inline = _images(tmp_path, 16, workers=0)
        for order in (many, many[::-1]):  # two passes, one loader: its workers serve both
            got = [(x.clone(), y.clone()) for x, y in pooled.batches(order)]
            want = list(inline.batches(order))
            assert len(got) == len(want) == len(order)
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, want))
        assert pooled._loader is not None  # kept between the passes
    assert pooled._loader is None  # and stopped at the end of the block


@pytest.mark.parametrize("jobs, threads, workers, want", [(1, 1, 2, 1), (2, 1, 2, 0), (1, 2, 2, 0), (1, 0, 2, 0)])
def test_decoding_workers_never_take_a_core_the_jobs_compute_on(monkeypatch, jobs, threads, workers, want):
    from osd import runtime
    from osd.config import Config

    monkeypatch.setattr(runtime, "cores", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    cfg = Config().replace(**{"project.device": "cpu", "project.workers": workers, "project.threads": threads})
    assert runtime.decode_workers(cfg.project, jobs=jobs) == want
    assert jobs * ((threads or 2) + runtime.decode_workers(cfg.project, jobs=jobs)) <= 2 or want == 0

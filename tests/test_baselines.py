"""Issue 21: out-of-distribution baselines beside the locked method, checked against direct numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from osd import config
from osd.osr.baselines import EnergyScore, KNNScore, MaxLogit, ViM
from osd.pipeline.job import Job


def test_energy_and_maxlogit_are_the_negated_formulas():
    logits = np.array([[2.0, 0.5, -1.0], [10.0, 9.0, 0.0]])
    energy = -np.log(np.exp(logits).sum(axis=1))
    np.testing.assert_allclose(EnergyScore().fit(logits).score_samples(logits), energy)
    np.testing.assert_allclose(MaxLogit().fit(logits).score_samples(logits), [-2.0, -10.0])
    # higher = more unknown: a flat, low-logit sample scores above a confident one
    assert EnergyScore().fit(logits).score_samples(np.array([[0.1, 0.1, 0.1]]))[0] > energy.max()


def test_knn_is_the_kth_smallest_normalised_distance():
    rng = np.random.default_rng(0)
    train, probe = rng.normal(size=(40, 5)), rng.normal(size=(6, 5))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    d = np.linalg.norm(unit(probe)[:, None, :] - unit(train)[None, :, :], axis=2)
    np.testing.assert_allclose(KNNScore(k=7).fit(train).score_samples(probe), np.sort(d, axis=1)[:, 6])
    assert KNNScore(k=500).fit(train).k_ == 40  # k never exceeds the training set


def test_vim_equals_a_direct_svd_computation_and_flags_an_off_subspace_sample():
    rng = np.random.default_rng(1)
    n, dim, classes, keep = 200, 6, 3, 3
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    train = rng.normal(size=(n, keep)) * [5, 4, 3] @ basis[:, :keep].T + 0.05 * rng.normal(size=(n, dim))
    W, b = rng.normal(size=(classes, dim)), rng.normal(size=classes)
    vim = ViM(W, b, dim=keep).fit(train)
    # direct: origin -pinv(W) b; principal subspace by SVD of the centred training features
    u = -np.linalg.pinv(W) @ b
    _, _, vt = np.linalg.svd(train - u, full_matrices=False)
    principal = vt[:keep].T

    def residual(x):
        c = x - u
        return np.linalg.norm(c - c @ principal @ principal.T, axis=1)

    alpha = (train @ W.T + b).max(axis=1).mean() / residual(train).mean()
    probe = np.vstack([train[:5], train[:1] + 3 * basis[:, -1]])  # the last one leaves the subspace
    logits = probe @ W.T + b
    expected = alpha * residual(probe) - np.log(np.exp(logits).sum(axis=1))
    np.testing.assert_allclose(vim.score_samples(probe), expected, rtol=1e-6)
    assert vim.score_samples(probe)[-1] > vim.score_samples(probe)[:5].max()


def test_baselines_are_evaluated_without_retraining_and_reported(tiny_project: Path):
    """A cached study, then other baselines: only the evaluation is recomputed."""
    from osd.pipeline.osr import calibrated, evaluate
    from osd.pipeline.train import embedded, trained

    cfg = config.load(tiny_project)
    first = evaluate(Job.of(cfg), "a")
    assert set(first.baselines) == {"energy", "maxlogit", "vim", "knn"}
    for name, b in first.baselines.items():
        assert 0.0 <= b["auroc"] <= 1.0 and b["threshold"]["n"] > 0, name
        assert set(b["locked_minus_baseline"]) == {"auroc", "open_set_accuracy"}
        d = b["locked_minus_baseline"]["auroc"]
        assert d["difference"] == pytest.approx(first.osr["auroc"] - b["auroc"])
    fewer = Job.of(cfg.replace(**{"osr.baselines": ["energy"]}))
    assert trained(fewer, "a").cached and embedded(fewer, "a").cached and calibrated(fewer, "a").cached
    again = evaluate(fewer, "a")
    assert not again.cached and list(again.baselines) == ["energy"]
    assert again.baselines["energy"]["auroc"] == first.baselines["energy"]["auroc"]
    from osd.report.build import build_report

    rows = build_report(fewer.cfg, ["a"], [0]).rows
    assert any(r["approach"] == "baseline_energy" and r["split"] == "a" for r in rows)


def test_an_unknown_baseline_is_one_line(tiny_project: Path):
    from typer.testing import CliRunner

    from osd.cli.app import app

    r = CliRunner().invoke(app, ["osr", "-p", str(tiny_project), "--split", "a", "--set", "osr.baselines=['odin2']"])
    assert r.exit_code == 1 and "osr.baselines" in r.output and "Traceback" not in r.output


def test_the_study_notebook_is_committed_without_outputs():
    import json

    nb = json.loads((Path(__file__).resolve().parents[1] / "examples" / "study.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    text = "".join("".join(c["source"]) for c in code)
    for needed in ("osd.Project", "run_all", "verdict.png", "predict("):
        assert needed in text, needed


def test_odin_is_the_tempered_softmax_of_the_perturbed_image():
    """On a linear classifier the input gradient has a closed form: (W^T (softmax(Wx/T) - onehot(y))) / T."""
    import torch

    from osd.models.odin import odin_scores

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    x = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    W, b = net[1].weight.detach(), net[1].bias.detach()
    norm = lambda p: (p - 0.5) / 0.25  # noqa: E731  (a normalisation, as the step passes one)
    T, eps = 10.0, 0.01
    z = norm(x).flatten(1)
    logits = z @ W.T + b
    p = torch.softmax(logits / T, 1)
    onehot = torch.nn.functional.one_hot(logits.argmax(1), 3).double()
    grad = ((p - onehot) @ W / T / len(x) / 0.25).view_as(x)  # mean cross-entropy, chain rule through norm
    perturbed = x - eps * grad.sign()
    expected = -torch.softmax((norm(perturbed).flatten(1) @ W.T + b) / T, 1).max(1).values
    torch.testing.assert_close(odin_scores(net, x, norm, T, eps), expected)
    # eps = 0: the tempered max softmax itself; the perturbation raises the predicted class's softmax
    plain = -p.max(1).values
    torch.testing.assert_close(odin_scores(net, x, norm, T, 0.0), plain)
    assert (expected <= plain + 1e-12).all()
    assert all(q.grad is None for q in net.parameters())  # no parameter gradients left behind


def test_odin_is_opt_in_and_joined_row_for_row(tiny_project: Path):
    """Adding ODIN to a cached study runs its own step and the evaluation only; its scores are the
    classifier's ODIN scores of the very images the embeddings hold, in their order."""
    import torch

    from osd.data.images import load_rgb
    from osd.data.tensors import IMAGENET_MEAN, IMAGENET_STD, pil_to_uint8
    from osd.models.odin import odin_scores
    from osd.pipeline.odin import odin_scored
    from osd.pipeline.osr import calibrated, evaluate
    from osd.pipeline.train import embedded, load_model, trained

    cfg = config.load(tiny_project)
    first = evaluate(Job.of(cfg), "a")
    assert "odin" not in first.baselines  # not in the default list: it costs a second pass
    with_odin = Job.of(cfg.replace(**{"osr.baselines": ["energy", "odin"]}))
    r = evaluate(with_odin, "a")
    assert trained(with_odin, "a").cached and embedded(with_odin, "a").cached and calibrated(with_odin, "a").cached
    assert not r.cached and list(r.baselines) == ["energy", "odin"]
    b = r.baselines["odin"]
    assert 0.0 <= b["auroc"] <= 1.0 and b["threshold"]["n"] == len(embedded(Job.of(cfg), "a").payload["threshold"]["labels"])
    assert b["locked_minus_baseline"]["auroc"]["difference"] == pytest.approx(r.osr["auroc"] - b["auroc"])
    assert r.baselines["energy"]["auroc"] == first.baselines["energy"]["auroc"]
    step = odin_scored(with_odin, "a")
    assert step.cached and evaluate(with_odin, "a").cached
    emb = embedded(Job.of(cfg), "a").payload
    for part in ("threshold", "test_known", "test_unknown"):
        assert len(step.payload[part]) == len(emb[part]["labels"]) and np.isfinite(step.payload[part]).all()
    # the first unknown test image, scored directly, is the step's first test_unknown row
    net = load_model(trained(Job.of(cfg), "a").payload, cfg.classifier.arch)
    img = pil_to_uint8(load_rgb(cfg.path(cfg.neu.root) / emb["test_unknown"]["paths"][0]), cfg.classifier.image_size)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    direct = odin_scores(net, img[None].float() / 255, lambda p: (p - mean) / std)
    assert float(direct[0]) == pytest.approx(float(step.payload["test_unknown"][0]), abs=1e-6)

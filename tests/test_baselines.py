"""Issue 21: out-of-distribution baselines beside the locked method, checked against direct numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from osd import config
from osd.osr.baselines import EnergyScore, KNNScore, MaxLogit, ViM


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
    first = evaluate(cfg, "a")
    assert set(first.baselines) == {"energy", "maxlogit", "vim", "knn"}
    for name, b in first.baselines.items():
        assert 0.0 <= b["auroc"] <= 1.0 and b["threshold"]["n"] > 0, name
        assert set(b["locked_minus_baseline"]) == {"auroc", "open_set_accuracy"}
        d = b["locked_minus_baseline"]["auroc"]
        assert d["difference"] == pytest.approx(first.osr["auroc"] - b["auroc"])
    fewer = cfg.replace(**{"osr.baselines": ["energy"]})
    assert trained(fewer, "a").cached and embedded(fewer, "a").cached and calibrated(fewer, "a").cached
    again = evaluate(fewer, "a")
    assert not again.cached and list(again.baselines) == ["energy"]
    assert again.baselines["energy"]["auroc"] == first.baselines["energy"]["auroc"]
    from osd.report.build import build_report

    rows = build_report(fewer, ["a"], [0])["rows"]
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
    for needed in ("init_project", "run_all", "summary_csv", "verdict.png", "predict("):
        assert needed in text, needed

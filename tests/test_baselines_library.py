"""The hand-written baselines against pytorch-ood's own implementations, on the same features.

osd keeps its numpy baselines (float64, scikit-learn's estimator contract, no torch in the scoring
of cached arrays); these tests hold them to the maintained library's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pood = pytest.importorskip("pytorch_ood.detector", reason="pytorch-ood is not installed (pip install pytorch-ood)")

from osd.osr.baselines import EnergyScore, KNNScore, MaxLogit, ViM  # noqa: E402


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, (4, 32))
    y = rng.integers(0, 4, 200)
    train = means[y] + rng.normal(0, 1, (200, 32))
    test = np.r_[means[rng.integers(0, 4, 40)] + rng.normal(0, 1, (40, 32)), rng.normal(0, 4, (20, 32))]
    W, b = rng.normal(0, 0.3, (4, 32)), rng.normal(0, 0.1, 4)
    return train, y, test, W, b


def test_energy_and_maxlogit_match_pytorch_ood(features):
    _, _, test, W, b = features
    logits = test @ W.T + b
    t = torch.as_tensor(logits)
    np.testing.assert_allclose(EnergyScore().fit(logits).score_samples(logits),
                               pood.EnergyBased.score(t).numpy(), rtol=1e-6)
    np.testing.assert_allclose(MaxLogit().fit(logits).score_samples(logits), pood.MaxLogit.score(t).numpy(), rtol=1e-6)


def test_vim_matches_pytorch_ood(features):
    train, y, test, W, b = features
    ours = ViM(W, b, dim=8).fit(train)
    theirs = pood.ViM(None, d=ours.dim_, w=torch.as_tensor(W, dtype=torch.float32),
                      b=torch.as_tensor(b, dtype=torch.float32))
    theirs.fit_features(torch.as_tensor(train, dtype=torch.float32), torch.as_tensor(y))
    assert ours.alpha_ == pytest.approx(theirs.alpha, rel=1e-4)
    np.testing.assert_allclose(ours.score_samples(test),
                               theirs.predict_features(torch.as_tensor(test, dtype=torch.float32)).numpy(),
                               rtol=1e-3, atol=1e-3)  # theirs computes in float32


def test_knn_matches_pytorch_ood(features):
    train, y, test, _, _ = features
    ours = KNNScore(k=5).fit(train)
    theirs = pood.KNN(None, k=5, normalize=True).fit_features(torch.as_tensor(train), torch.as_tensor(y))
    np.testing.assert_allclose(ours.score_samples(test), theirs.predict_features(torch.as_tensor(test)).numpy(),
                               rtol=1e-6)



def test_gen_is_pytorch_oods_and_ranks_a_flat_softmax_as_more_unknown(features):
    from osd.osr.baselines import GENScore, fit_baseline

    train, _, test, W, b = features
    logits = test @ W.T + b
    scorer, reads = fit_baseline("gen", {"logits": train @ W.T + b, "embeddings": train}, (W, b))
    assert reads == "logits" and isinstance(scorer, GENScore)
    np.testing.assert_allclose(scorer.score_samples(logits), pood.GEN.score(torch.as_tensor(logits)).numpy())
    confident, flat = np.array([[12.0, 0.0, 0.0, 0.0]]), np.zeros((1, 4))
    assert scorer.score_samples(flat)[0] > scorer.score_samples(confident)[0]  # higher = more unknown


def test_react_is_pytorch_oods_on_the_stored_embeddings(features):
    from scipy.special import logsumexp

    from osd.osr.baselines import ReActScore, fit_baseline

    train, _, test, W, b = features
    train, test = np.abs(train), np.abs(test)  # post-activation embeddings are non-negative
    scorer, reads = fit_baseline("react", {"logits": train @ W.T + b, "embeddings": train}, (W, b))
    assert reads == "embeddings" and isinstance(scorer, ReActScore)
    assert scorer.threshold_ == pytest.approx(np.percentile(train, 90))
    clipped = np.minimum(test, scorer.threshold_)
    np.testing.assert_allclose(scorer.score_samples(test), -logsumexp(clipped @ W.T + b, axis=1), rtol=1e-10)
    # pytorch-ood's ReAct as its users call it (float32 feature maps, a linear head), the same numbers
    head = torch.nn.Linear(32, 4)
    head.weight.data, head.bias.data = torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    theirs = pood.ReAct(torch.nn.Identity(), head).fit_feature_maps(torch.as_tensor(train, dtype=torch.float32),
                                                                 torch.zeros(len(train), dtype=torch.long))
    np.testing.assert_allclose(scorer.score_samples(test),
                               theirs.predict_feature_maps(torch.as_tensor(test, dtype=torch.float32)).numpy(), rtol=1e-4)


def test_the_baseline_names_agree_where_they_are_listed():
    from osd.config import Config
    from osd.osr.baselines import BASELINES
    from osd.pipeline.osr import BASELINE_SCORES
    from osd.report.build import APPROACH_HUMAN

    assert set(BASELINE_SCORES) == set(BASELINES)
    assert {f"baseline_{n}" for n in BASELINES} <= set(APPROACH_HUMAN)
    for name in BASELINES:  # the config accepts every scorer's name when it loads
        assert Config().replace(**{"osr.baselines": [name]}).osr.baselines == [name]


def test_gen_runs_as_an_opt_in_baseline_of_the_study(tiny_project):
    import json

    from conftest import ok

    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a", "--set", "osr.baselines=['energy', 'gen', 'react']")
    m = json.loads((tiny_project / "outputs" / "split_a" / "metrics.json").read_text())
    found = json.dumps(m)
    assert '"gen"' in found and "GEN: generalized entropy" in found and "ReAct: energy" in found
    assert m["osr"]["baselines"]["react"]["auroc"] is not None
    ok("report", "-p", p)
    html = (tiny_project / "outputs" / "report.html").read_text()
    assert "baseline: GEN (pytorch-ood)" in html and "baseline: ReAct (pytorch-ood)" in html

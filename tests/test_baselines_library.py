"""The hand-written baselines against pytorch-ood's own implementations, on the same features.

osd keeps its numpy baselines (float64, scikit-learn's estimator contract, no torch in the scoring
of cached arrays); these tests hold them to the maintained library's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pood = pytest.importorskip("pytorch_ood.detector", reason="pytorch-ood is not installed (pip install pytorch-ood)")

from osd.osr.baselines import EnergyScore, KNNScore, MaxLogit, ViM  # noqa: E402
from osd.osr.embeddings import EmbeddedPart  # noqa: E402


def part(x, W=None, b=None, labels=None) -> EmbeddedPart:
    """A training partition as the embed step stores it."""
    logits = x @ W.T + b if W is not None else np.zeros((len(x), 1))
    return EmbeddedPart(x, logits, list(labels) if labels is not None else ["a"] * len(x), [f"{i}.jpg" for i in range(len(x))])


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
    scorer, reads = fit_baseline("gen", part(train, W, b), (W, b))
    assert reads == "logits" and isinstance(scorer, GENScore)
    np.testing.assert_allclose(scorer.score_samples(logits), pood.GEN.score(torch.as_tensor(logits)).numpy())
    confident, flat = np.array([[12.0, 0.0, 0.0, 0.0]]), np.zeros((1, 4))
    assert scorer.score_samples(flat)[0] > scorer.score_samples(confident)[0]  # higher = more unknown


def test_react_is_pytorch_oods_on_the_stored_embeddings(features):
    from scipy.special import logsumexp

    from osd.osr.baselines import ReActScore, fit_baseline

    train, _, test, W, b = features
    train, test = np.abs(train), np.abs(test)  # post-activation embeddings are non-negative
    scorer, reads = fit_baseline("react", part(train, W, b), (W, b))
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


def test_ash_is_pytorch_oods_on_the_pooled_embedding_as_a_1x1_map(features):
    from scipy.special import logsumexp

    from osd.osr.baselines import ASHScore, fit_baseline

    train, _, test, W, b = features
    train, test = np.abs(train), np.abs(test)
    scorer, reads = fit_baseline("ash", part(train, W, b), (W, b))
    assert reads == "embeddings" and isinstance(scorer, ASHScore)
    # ASH-S by hand: keep the largest 35% of each row (11 of 32), scale by exp(sum before / sum after)
    k = 32 - int(np.round(32 * 0.65))
    kept = np.where(test >= np.sort(test, axis=1)[:, [-k]], test, 0.0)
    shaped = kept * np.exp(test.sum(1) / kept.sum(1))[:, None]
    np.testing.assert_allclose(scorer.score_samples(test), -logsumexp(shaped @ W.T + b, axis=1), rtol=1e-10)
    # pytorch-ood's ASH as OpenOOD calls it on pooled features (B x C x 1 x 1, a linear head), float32
    head = torch.nn.Linear(32, 4).double()
    head.weight.data, head.bias.data = torch.as_tensor(W), torch.as_tensor(b)
    theirs = pood.ASH(torch.nn.Identity(), lambda f: head(f.flatten(1)), variant="ash-s")
    np.testing.assert_allclose(scorer.score_samples(test),
                               theirs.predict_feature_maps(torch.as_tensor(test)[:, :, None, None]).numpy(), rtol=1e-10)


def test_mahalanobis_norm_is_pytorch_oods_and_ranks_as_the_locked_scorer_with_an_empirical_covariance(features):
    from osd.osr.baselines import NormalizedMahalanobis, fit_baseline
    from osd.osr.mahalanobis import MahalanobisScorer

    train, y, test, W, b = features
    names = np.array(["crazing", "inclusion", "patches", "scratches"])[y]  # labels as the embeddings hold them
    scorer, reads = fit_baseline("mahalanobis_norm", part(train, W, b, names), (W, b))
    assert reads == "embeddings" and isinstance(scorer, NormalizedMahalanobis)
    unit = lambda x: torch.as_tensor(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=torch.float32)  # noqa: E731
    theirs = pood.Mahalanobis(None).fit_features(unit(train), torch.as_tensor(y))
    np.testing.assert_allclose(scorer.score_samples(test), theirs.predict_features(unit(test)).numpy(), rtol=1e-6)
    # osd's locked scorer with the empirical covariance instead of shrinkage: the library's scatter is
    # the covariance times n (plus a 1e-6 ridge) and its score half the squared distance, so ours = 2 n theirs
    ours = MahalanobisScorer(covariance="empirical", normalize="l2").fit(train, names)
    np.testing.assert_allclose(ours.score_samples(test), 2 * len(train) * scorer.score_samples(test), rtol=1e-3)
    assert scorer.score_samples(test[-20:]).mean() > scorer.score_samples(test[:40]).mean()  # far points score higher


def test_the_baseline_names_agree_where_they_are_listed():
    from osd.config import Config
    from osd.osr.baselines import BASELINES
    from osd.osr.baselines import SCORES as BASELINE_SCORES
    from osd.report.build import APPROACH_HUMAN

    assert set(BASELINE_SCORES) == set(BASELINES)
    assert {f"baseline_{n}" for n in BASELINES} <= set(APPROACH_HUMAN)
    for name in BASELINES:  # the config accepts every scorer's name when it loads
        assert Config().replace(**{"osr.baselines": [name]}).osr.baselines == [name]


def test_gen_runs_as_an_opt_in_baseline_of_the_study(tiny_project):
    import json

    from conftest import ok

    p = str(tiny_project)
    ok("osr", "-p", p, "--split", "a", "--set", "osr.baselines=['energy', 'gen', 'react', 'ash', 'mahalanobis_norm']")
    m = json.loads((tiny_project / "outputs" / "split_a" / "metrics.json").read_text())
    found = json.dumps(m)
    assert '"gen"' in found and "GEN: generalized entropy" in found and "ReAct: energy" in found
    assert "ASH-S: energy" in found and "Mahalanobis++" in found
    assert all(m["osr"]["baselines"][n]["auroc"] is not None for n in ("react", "ash", "mahalanobis_norm"))
    ok("report", "-p", p)
    html = (tiny_project / "outputs" / "report.html").read_text()
    assert "baseline: GEN (pytorch-ood)" in html and "baseline: ReAct (pytorch-ood)" in html
    assert "baseline: ASH-S (pytorch-ood)" in html and "baseline: Mahalanobis++, l2-normalised (pytorch-ood)" in html


@pytest.mark.parametrize("name", ["scale", "fdbd", "nnguide", "nci"])
def test_openood_leaders_are_pytorch_oods_own_and_rank_far_points_as_unknown(features, name):
    """SCALE, fDBD, NNGuide and NCI through osd's wrapper: the library's numbers on the same float32
    features and head, higher = more unknown (the shifted points score above the known test points)."""
    from osd.osr.baselines import LibraryScore, fit_baseline

    train, y, test, W, b = features
    train, test = np.abs(train), np.abs(test)  # post-ReLU embeddings, as a CNN's penultimate layer gives
    scorer, source = fit_baseline(name, part(train, W, b, y), (W, b))
    assert source == "embeddings" and isinstance(scorer, LibraryScore)
    z, zt = torch.as_tensor(train, dtype=torch.float32), torch.as_tensor(test, dtype=torch.float32)
    head = torch.nn.Linear(32, 4)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(W, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    codes = torch.as_tensor(y)
    direct = {
        "scale": lambda: pood.SCALE(torch.nn.Identity(), lambda f: head(f.flatten(1))).predict_feature_maps(
            zt[:, :, None, None]),
        "fdbd": lambda: pood.fDBD(None, head).fit_features(z).predict_features(zt),
        "nnguide": lambda: pood.NNGuide(None, head).fit_features(z, codes).predict_features(zt),
        "nci": lambda: pood.NCI(None, head).fit_features(z).predict_features(zt),
    }[name]
    with torch.no_grad():
        expected = direct().numpy()
    got = scorer.score_samples(test)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    shifted = np.abs(np.random.default_rng(1).normal(0, 0.2, (20, 32)))  # far from every class: small activations
    assert np.median(scorer.score_samples(shifted)) > np.median(got[:40])


def test_rmds_is_the_librarys_relative_mahalanobis_where_its_covariance_is_invertible(features):
    """osd's RMDS with an empirical covariance and raw embeddings = pytorch-ood's RMD x the training count
    (the library inverts the summed scatter); the study's own RMDS (shrinkage, l2) ranks as the library's does
    on well-conditioned features, and stays finite where the scatter is singular (more dimensions than images)."""
    from osd.osr.baselines import RelativeMahalanobis, fit_baseline

    train, y, test, _, _ = features
    ours = RelativeMahalanobis("empirical", "none").fit(train, y).score_samples(test)
    z, zt = torch.as_tensor(train, dtype=torch.float32), torch.as_tensor(test, dtype=torch.float32)
    lib = pood.RMD(None).fit_features(z, torch.as_tensor(y)).predict_features(zt).numpy().astype(np.float64)
    np.testing.assert_allclose(ours, lib * len(train), rtol=1e-3, atol=1e-2)  # the library's float32
    scorer, _ = fit_baseline("rmds", part(train, None, None, y), (None, None))
    assert isinstance(scorer, RelativeMahalanobis)
    wide = np.abs(np.random.default_rng(2).normal(0, 1, (40, 300)))  # 40 images, 300 dimensions
    got = RelativeMahalanobis().fit(wide, np.repeat([0, 1], 20)).score_samples(wide)
    assert np.all(np.isfinite(got))

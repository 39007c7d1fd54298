"""The cached-prefix regimen: the cut is exact, the prefix is shared, the default's keys are untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from osd import config
from osd.config import ClassifierSection
from osd.errors import ConfigError
from osd.models.backbones import build
from osd.models.classifier import EmbeddingClassifier
from osd.models.regimen import VIEWS, fit_suffix, prefix_views, split_model, view


@pytest.mark.parametrize("arch, blocks", [("resnet18", 4), ("tf_efficientnet_lite0", 8)])
def test_prefix_then_suffix_is_the_network(arch: str, blocks: int):
    pytest.importorskip("timm") if arch.startswith("tf_") else None
    torch.manual_seed(0)
    model = EmbeddingClassifier(build(arch, "none"), 3).eval()
    x = torch.randn(2, 3, 64, 64)
    ref = model.features(x)
    for n in range(blocks + 1):
        parts = split_model(model.features, n)
        parts.suffix.eval()
        assert len(parts.trained) == n and parts.blocks == blocks
        assert torch.equal(parts.suffix(parts.prefix(x)), ref)
        assert not any(p.requires_grad for p in parts.prefix.parameters())
        for p in model.parameters():
            p.requires_grad_(True)
    with pytest.raises(ConfigError, match=f"has {blocks} blocks"):
        split_model(model.features, blocks + 1)


def test_the_eight_views_are_the_dihedral_group():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = [view(x, v) for v in range(VIEWS)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[0], x) and torch.equal(views[4], x.flip(-1))


def test_fit_suffix_trains_the_suffix_and_head_only():
    torch.manual_seed(0)
    model = EmbeddingClassifier(build("resnet18", "none"), 2)
    parts = split_model(model.features, 1)
    frozen = {k: v.clone() for k, v in parts.prefix.state_dict().items()}
    x = torch.randn(12, 3, 32, 32)
    y = torch.tensor([0, 1] * 6)
    feats = prefix_views(parts.prefix, x)
    assert feats.shape[:2] == (12, VIEWS)
    recipe = ClassifierSection(epochs=3, batch_size=4, patience=0)
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    out = fit_suffix(model.head, parts.suffix, feats, y, feats[:4], y[:4], recipe, torch.Generator().manual_seed(0))
    assert out.epochs_run == 3 and set(out.state_dict) == {k for k in out.state_dict if k.split(".")[0] in
                                                            ("suffix", "head")}
    assert not torch.equal(out.state_dict["head.weight"], before["weight"])
    assert all(torch.equal(parts.prefix.state_dict()[k], v) for k, v in frozen.items())


def test_the_default_regimen_keeps_every_cache_key(tmp_path: Path):
    """train_blocks = -1 (the default) leaves the settings a key holds as they were before the setting existed."""
    from osd.pipeline.data import settings_key

    cfg = config.Config(base_dir=tmp_path)
    flat = settings_key(cfg, ("classifier", "splits"), lambda w, a: {"kind": w})
    assert "classifier.train_blocks" not in flat and "splits.design" not in flat
    assert "classifier.train_blocks" in settings_key(cfg.replace(**{"classifier.train_blocks": 1}), ("classifier",),
                                                     lambda w, a: {"kind": w})


@pytest.mark.slow
def test_prefix_is_computed_once_for_every_split_and_seed(tiny_project: Path):
    from osd import Project
    from osd.pipeline.grid import plan_jobs

    overrides = ["classifier.train_blocks=1", "classifier.epochs=2"]
    p = Project(tiny_project, overrides)
    deps, _ = plan_jobs(p.config, ["a", "b"], [0, 1], two_stage=True)
    assert [d.kind for d in deps] == ["prefix", "patchcore", "patchcore"]
    a = p.train("a")
    assert a.trained_blocks == ["layer4"]
    shared = list((tiny_project / "outputs" / "shared").glob("prefix-*.npz"))
    assert len(shared) == 1
    stamp = shared[0].stat().st_mtime_ns
    p.train("b")
    seed1 = Project(tiny_project, [*overrides, "project.seed=1", "project.output_dir=outputs/seed_1"])
    seed1.train("a")
    assert [f.stat().st_mtime_ns for f in (tiny_project / "outputs" / "shared").glob("prefix-*.npz")] == [stamp]
    # the classifier saved is the whole network: the embed step runs it on images as for full fine-tuning
    emb = p.embed("a")
    assert emb.counts["train"] > 0 and np.isfinite(emb.images_per_second)
    v = p.validate("a")
    assert 0.0 <= v.closed_set_accuracy <= 1.0 and set(v.loko_auroc) == set(p.config.split("a").known)

from pathlib import Path

import pytest
import torch
import torchvision

from osd.errors import WeightsError
from osd.models.backbones import build, describe_weights
from osd.models.classifier import EmbeddingClassifier


def test_local_state_dict_loads_and_a_different_head_is_tolerated(tmp_path: Path):
    torch.manual_seed(0)
    src = torchvision.models.resnet18(num_classes=7)  # a head of another size
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    model = build("resnet18", str(path))
    torch.testing.assert_close(model.conv1.weight, src.conv1.weight)
    clf = EmbeddingClassifier(model, 4)
    z, logits = clf.embed(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 512) and logits.shape == (2, 4)
    assert describe_weights(str(path)) == "file:r18.pth"


def test_mismatching_state_dict_names_the_keys(tmp_path: Path):
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(WeightsError, match="unexpected keys"):
        build("resnet18", str(path))
    with pytest.raises(WeightsError, match="not found"):
        build("resnet18", str(tmp_path / "missing.pth"))


def test_random_init():
    assert isinstance(build("resnet18", "none"), torchvision.models.ResNet)


def test_stage_statistics_come_from_the_same_pass():
    torch.manual_seed(0)
    clf = EmbeddingClassifier(build("resnet18", "none"), 3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stats, logits = clf.embed_stages(x)
        z, ref_logits = clf.embed(x)
        l1 = clf.features.layer1(clf.features.maxpool(clf.features.relu(clf.features.bn1(clf.features.conv1(x)))))
    assert clf.stage_names == ["layer1", "layer2", "layer3", "layer4"]
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(stats["penultimate"], z)
    torch.testing.assert_close(stats["layer4_mean"], z)  # ResNet's penultimate = pooled layer4
    torch.testing.assert_close(stats["layer1_mean"], l1.mean((2, 3)))
    torch.testing.assert_close(stats["layer1_std"], l1.std((2, 3), correction=0))
    assert stats["layer2_std"].shape == (2, 128)
    assert not clf.features.layer1._forward_hooks  # hooks are removed after the pass

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

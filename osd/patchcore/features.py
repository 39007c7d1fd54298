"""Locally aware patch features: 3x3 average pooling of each chosen layer, deeper layers upsampled
to the first layer's grid, channels concatenated.

torchvision ResNets are run up to their deepest chosen ``layerN``. Any other CNN goes through
timm's ``features_only`` wrapper, where ``layerN`` names the feature stage of stride 2^(N+1), as
in a ResNet: the paper's ``layer2`` + ``layer3`` are the mid-level stages of stride 8 and 16
(``blocks.2`` and ``blocks.4`` of an EfficientNet-Lite), deep enough to describe texture, shallow
enough to keep locality and less ImageNet-specific than the last stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

LAYER_ORDER = ("layer1", "layer2", "layer3", "layer4")


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a convolution into it (ResNet stem, blocks, downsample).

    Inference only: the folded convolution computes the same function with one pass fewer over
    each activation map.
    """
    for child in module.children():
        fold_batchnorm(child)
    pairs = [(module, "conv1", "bn1"), (module, "conv2", "bn2"), (module, "conv3", "bn3")]
    if isinstance(module, nn.Sequential):
        pairs += [(module, str(i), str(i + 1)) for i in range(len(module) - 1)]
    for parent, conv, bn in pairs:
        c, b = getattr(parent, conv, None), getattr(parent, bn, None)
        # exact type: subclasses such as timm's BatchNormAct2d also apply an activation
        if isinstance(c, nn.Conv2d) and type(b) is nn.BatchNorm2d and not b.training:
            # in place (no copy of the module): one layer's weights at a time are duplicated
            c.weight, c.bias = fuse_conv_bn_weights(c.weight, c.bias, b.running_mean, b.running_var, b.eps,
                                                    b.weight, b.bias)
            setattr(parent, bn, nn.Identity())
    return module


class PatchFeatureExtractor(nn.Module):
    """(B,3,H,W) normalised images -> (B,D,h,w) patch features. Runs the backbone only up to the deepest layer."""

    def __init__(self, backbone: nn.Module, layers: list[str], reduce_dim: int = 0, seed: int = 0,
                 arch: str | None = None):
        super().__init__()
        self.layers = sorted(layers, key=LAYER_ORDER.index)
        deepest = LAYER_ORDER.index(self.layers[-1])
        self.trunk = None
        if not all(hasattr(backbone, n) for n in ("conv1", "bn1", "relu", "maxpool", *self.layers)):
            self.trunk = timm_features(backbone, arch, [LAYER_ORDER.index(n) + 1 for n in self.layers])
        else:
            self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
            self.blocks = nn.ModuleDict({n: getattr(backbone, n) for n in LAYER_ORDER[: deepest + 1]})
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.eval()
        # an inference-only module: folded BatchNorm and channels-last layout are both faster
        # convolutions on CPU (oneDNN) for the same features
        fold_batchnorm(self)
        self.to(memory_format=torch.channels_last)
        with torch.no_grad():
            dim = sum(f.shape[1] for f in self._layer_maps(torch.zeros(1, 3, 64, 64)))
        self.full_dim = dim
        if reduce_dim and reduce_dim < dim:
            gen = torch.Generator().manual_seed(seed)
            proj = torch.randn(dim, reduce_dim, generator=gen) / reduce_dim**0.5
            self.register_buffer("projection", proj)
            self.dim = reduce_dim
        else:
            self.projection = None
            self.dim = dim

    def _layer_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.trunk is not None:
            return [self.pool(m) for m in self.trunk(x.contiguous(memory_format=torch.channels_last))]
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        maps = []
        for name, block in self.blocks.items():
            x = block(x)
            if name in self.layers:
                maps.append(self.pool(x))
        return maps

    # autocast dtype of the backbone's convolutions (None: float32); the features leave as float32
    compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is None:
            maps = self._layer_maps(x)
        else:
            with torch.autocast(x.device.type, dtype=self.compute_dtype):
                maps = [m.float() for m in self._layer_maps(x)]
        size = maps[0].shape[-2:]
        # written in place, layer by layer, instead of concatenating upsampled copies
        feats = torch.empty((maps[0].shape[0], self.full_dim, *size), dtype=maps[0].dtype, device=maps[0].device,
                            memory_format=torch.channels_last)
        start = 0
        for m in maps:
            end = start + m.shape[1]
            feats[:, start:end] = m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear",
                                                                                align_corners=False)
            start = end
        if self.projection is not None:
            feats = torch.einsum("bdhw,dk->bkhw", feats, self.projection)
        return feats


def timm_features(backbone: nn.Module, arch: str | None, indices: list[int]) -> nn.Module:
    """timm's ``features_only`` trunk of ``backbone`` (same weights) returning the stages ``indices``."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"{type(backbone).__name__} is not a ResNet and timm is not installed") from None
    if not arch or not timm.is_model(arch):
        raise ValueError(f"{arch!r}: patch features need a torchvision ResNet or a timm CNN")
    n_stages = len(getattr(backbone, "feature_info", []))
    if n_stages and max(indices) >= n_stages:
        raise ValueError(f"{arch} has {n_stages} feature stages; layer{max(indices)} does not exist")
    trunk = timm.create_model(arch, pretrained=False, features_only=True, out_indices=tuple(indices))
    result = trunk.load_state_dict(backbone.state_dict(), strict=False)
    if result.missing_keys:
        raise ValueError(f"{arch}: feature trunk does not match the model ({result.missing_keys[:3]})")
    return trunk


def to_patches(feats: torch.Tensor) -> torch.Tensor:
    """(B,D,h,w) -> (B*h*w, D), patch rows of one image contiguous."""
    b, d, h, w = feats.shape
    return feats.permute(0, 2, 3, 1).reshape(b * h * w, d)

"""Locally aware patch features from a torchvision ResNet: 3x3 average pooling of each chosen
layer, deeper layers upsampled to the first layer's grid, channels concatenated."""

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
        if isinstance(c, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and not b.training:
            # in place (no copy of the module): one layer's weights at a time are duplicated
            c.weight, c.bias = fuse_conv_bn_weights(c.weight, c.bias, b.running_mean, b.running_var, b.eps,
                                                    b.weight, b.bias)
            setattr(parent, bn, nn.Identity())
    return module


class PatchFeatureExtractor(nn.Module):
    """(B,3,H,W) normalised images -> (B,D,h,w) patch features. Runs the backbone only up to the deepest layer."""

    def __init__(self, backbone: nn.Module, layers: list[str], reduce_dim: int = 0, seed: int = 0):
        super().__init__()
        missing = [n for n in ("conv1", "bn1", "relu", "maxpool", *layers) if not hasattr(backbone, n)]
        if missing:
            raise ValueError(f"{type(backbone).__name__} is not a ResNet-like model (no {', '.join(missing)})")
        self.layers = sorted(layers, key=LAYER_ORDER.index)
        deepest = LAYER_ORDER.index(self.layers[-1])
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
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        maps = []
        for name, block in self.blocks.items():
            x = block(x)
            if name in self.layers:
                maps.append(self.pool(x))
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self._layer_maps(x)
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


def to_patches(feats: torch.Tensor) -> torch.Tensor:
    """(B,D,h,w) -> (B*h*w, D), patch rows of one image contiguous."""
    b, d, h, w = feats.shape
    return feats.permute(0, 2, 3, 1).reshape(b * h * w, d)

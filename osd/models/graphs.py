"""The study's decision inputs as single torch modules, for export (pure torch, no osd state).

Both take images as float32 (N, 3, S, S) in [0, 1] (the decoded, resized RGB image / 255) and apply
the ImageNet normalisation themselves, so a user of an exported graph needs only the resize.

- :class:`OneStageGraph`: image -> (arg-max class index, smallest squared Mahalanobis distance to a
  class mean of the l2-normalised penultimate embedding, max softmax). The distance and the softmax
  are computed in float64, as the study computes them.
- :class:`Stage1Graph`: image -> PatchCore score (the largest, over the image's patches, of the
  distance to the nearest memory-bank patch).
"""

from __future__ import annotations

import torch
from torch import nn

from osd.data.tensors import IMAGENET_MEAN, IMAGENET_STD


class _Normalise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class OneStageGraph(nn.Module):
    def __init__(self, classifier: nn.Module, means: torch.Tensor, precision: torch.Tensor, l2: bool):
        super().__init__()
        self.norm = _Normalise()
        self.classifier = classifier.eval()
        self.register_buffer("means", means.to(torch.float64))
        self.register_buffer("precision", precision.to(torch.float64))
        self.l2 = l2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.classifier.features(self.norm(x))
        logits = self.classifier.head(z)
        z = z.to(torch.float64)
        if self.l2:
            z = z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(1e-300)
        d = z.unsqueeze(1) - self.means.unsqueeze(0)  # (N, K, D)
        dist = ((d @ self.precision) * d).sum(dim=2)
        probs = torch.softmax(logits.to(torch.float64), dim=1)
        return logits.argmax(dim=1), dist.min(dim=1).values, probs.max(dim=1).values


class Stage1Graph(nn.Module):
    def __init__(self, extractor: nn.Module, bank: torch.Tensor):
        super().__init__()
        self.norm = _Normalise()
        self.extractor = extractor.eval()
        self.register_buffer("bank", bank.to(torch.float32))
        self.register_buffer("bank_sq", (bank.to(torch.float32) ** 2).sum(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.extractor(self.norm(x))  # (N, D, h, w)
        p = f.flatten(2).transpose(1, 2)  # (N, h*w, D)
        d2 = (p * p).sum(dim=2, keepdim=True) - 2.0 * (p @ self.bank.T) + self.bank_sq
        return d2.min(dim=2).values.clamp_min(0).sqrt().max(dim=1).values

"""The classifier as a pure torch module: a backbone whose head is split off, so the
penultimate-layer embedding is available next to the logits."""

from __future__ import annotations

import torch
from torch import nn

from osd.models.backbones import head_names


class EmbeddingClassifier(nn.Module):
    """``forward`` gives logits; ``embed`` gives (embedding, logits) in one pass."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        names = head_names(backbone)
        if not names:
            raise ValueError(f"{type(backbone).__name__} has no Linear head to replace")
        parent_name, _, attr = names[0].rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        old: nn.Linear = getattr(parent, attr)
        setattr(parent, attr, nn.Identity())
        self.features = backbone
        self.head = nn.Linear(old.in_features, num_classes)
        self.embedding_dim = old.in_features

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return z, self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

"""The classifier as a pure torch module: a backbone whose head is split off, so the
penultimate-layer embedding (and the pooled output of every residual stage) is available
next to the logits."""

from __future__ import annotations

import functools

import torch
from torch import nn

from osd.errors import ConfigError
from osd.models.backbones import head_names, new_model

STAGES = ("layer1", "layer2", "layer3", "layer4")


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
        # ResNet-family models expose their residual stages by name; timm models list their
        # feature stages (strides 2 ... 32) in feature_info, of which the last four match
        # layer1 ... layer4. Other models give only the penultimate embedding.
        self.stage_names = [n for n in STAGES if isinstance(getattr(backbone, n, None), nn.Module)]
        info = getattr(backbone, "feature_info", None)
        if not self.stage_names and info is not None:
            try:
                self.stage_names = [f["module"] for f in info][1:]
            except (TypeError, KeyError):
                self.stage_names = []

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return z, self.head(z)

    def embed_stages(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({"penultimate", "<stage>_mean", "<stage>_std", ...}, logits) in one pass.

        ``<stage>_mean`` / ``<stage>_std`` are the per-channel mean and standard deviation over
        the spatial grid of a residual stage's output.
        """
        maps: dict[str, torch.Tensor] = {}
        hooks = [
            self.features.get_submodule(n).register_forward_hook(lambda _m, _i, out, n=n: maps.__setitem__(n, out))
            for n in self.stage_names
        ]
        try:
            z = self.features(x)
        finally:
            for h in hooks:
                h.remove()
        stats = {"penultimate": z}
        for n in self.stage_names:
            f = maps[n].flatten(2).float()  # statistics in float32 whatever the autocast precision
            stats[f"{n}_mean"] = f.mean(2)
            stats[f"{n}_std"] = f.std(2, correction=0)
        return stats, self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@functools.lru_cache(maxsize=32)  # a pure check (raises, or returns None): once per process and setting
def check_classifier(arch: str, image_size: int) -> None:
    """Fail in a second, with the setting's name, when ``arch`` cannot be the classifier at ``image_size``.

    The model is built on the meta device (no memory, no weights) and run once on an empty batch,
    so a wrong input size (e.g. a ViT at 32 px) or a model without a Linear head is caught before
    any data is read.
    """
    try:
        with torch.device("meta"):
            model = EmbeddingClassifier(new_model(arch), 2)
            model.eval()
            model(torch.empty(2, 3, image_size, image_size))
    except ConfigError as exc:
        raise ConfigError(f"classifier.arch: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the dry run is a configuration problem
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ConfigError(f"classifier.arch = {arch!r} cannot run at classifier.image_size = {image_size} "
                          f"({type(exc).__name__}: {first})") from None

"""Training regimens: which blocks of the pretrained network are trained (pure torch).

``classifier.train_blocks = -1`` (the default) fine-tunes every block. ``N >= 0`` trains the last
``N`` blocks and the head; the blocks before them keep their pretrained weights and run in eval mode
(BatchNorm on its stored statistics), so their output for an image does not depend on the split or
the seed. That output (the *prefix*) is then computed once per image and view and shared by every
split and seed; only the trained blocks (the *suffix*) run per split.

Blocks: a ResNet's ``layer1 .. layer4``; an EfficientNet's (timm) ``blocks.0 .. blocks.6`` and its
1x1 head convolution (``conv_head`` with ``bn2``), 8 in all. The stem is always in the prefix.

Augmentation with a cached prefix: the 8 views of the dihedral group (90-degree turns, with and
without a flip), each computed once; an epoch draws one view per image. The full regimen's small
reflective shifts are left out (a shift would need the prefix again per epoch).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from osd.errors import ConfigError
from osd.models.training import TrainOutcome, _optimizer, keep_best
from osd.progress import Reporter, ensure

VIEWS = 8  # the dihedral group of the square: 4 turns x (no flip, flip)
FULL = -1


def view(x: torch.Tensor, v: int) -> torch.Tensor:
    """View ``v`` (0..7) of a batch of square images: ``v % 4`` quarter turns, flipped when ``v >= 4``."""
    out = torch.rot90(x, v % 4, dims=(-2, -1)) if v % 4 else x
    return out.flip(-1) if v >= 4 else out


@dataclass
class Parts:
    """A classifier cut in two at a block boundary: ``prefix`` (frozen) and ``suffix`` (trained, ending in
    the pooled embedding), sharing their modules with the classifier."""

    prefix: nn.Sequential
    suffix: nn.Sequential
    blocks: int  # the backbone's block count
    trained: list[str]  # the names of the trained blocks


def _units(backbone: nn.Module) -> tuple[list[nn.Module], list[tuple[str, list[nn.Module]]], list[nn.Module]]:
    """(stem, named blocks, tail) in forward order, for the families the regimen knows."""
    if all(hasattr(backbone, n) for n in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool")):
        blocks = [(f"blocks.{i}", [b]) for i, b in enumerate(backbone.blocks)]
        tail: list[nn.Module] = [backbone.global_pool, nn.Flatten(1)]
        drop = float(getattr(backbone, "drop_rate", 0.0) or 0.0)
        if drop:  # timm applies its dropout after pooling, in training only: as the full model does
            tail.append(nn.Dropout(drop))
        return [backbone.conv_stem, backbone.bn1], [*blocks, ("conv_head", [backbone.conv_head, backbone.bn2])], tail
    if all(hasattr(backbone, n) for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer4", "avgpool")):
        layers = [(n, [getattr(backbone, n)]) for n in ("layer1", "layer2", "layer3", "layer4")]
        return [backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool], layers, [backbone.avgpool, nn.Flatten(1)]
    raise ConfigError(f"classifier.train_blocks: {type(backbone).__name__} has no blocks this regimen knows (ResNet "
                      "layer1-4, EfficientNet blocks); use -1 (train every block)")


def block_count(backbone: nn.Module) -> int:
    return len(_units(backbone)[1])


def split_model(features: nn.Module, trained_blocks: int) -> Parts:
    """Cut ``features`` (an :class:`~osd.models.classifier.EmbeddingClassifier`'s backbone) before its last
    ``trained_blocks`` blocks; the prefix's parameters stop requiring gradients."""
    stem, blocks, tail = _units(features)
    if not 0 <= trained_blocks <= len(blocks):
        raise ConfigError(f"classifier.train_blocks = {trained_blocks}: this backbone has {len(blocks)} blocks "
                          f"(use -1 for all, or 0 to {len(blocks)})")
    cut = len(blocks) - trained_blocks
    prefix = nn.Sequential(*stem, *(m for _, ms in blocks[:cut] for m in ms))
    suffix = nn.Sequential(*(m for _, ms in blocks[cut:] for m in ms), *tail)
    for p in prefix.parameters():
        p.requires_grad_(False)
    return Parts(prefix.eval(), suffix, len(blocks), [n for n, _ in blocks[cut:]])


@torch.no_grad()
def prefix_views(prefix: nn.Module, x: torch.Tensor, views: int = VIEWS) -> torch.Tensor:
    """The prefix's output for every view of a normalised batch: (N, views, C, H, W), fp32."""
    prefix.eval()
    return torch.stack([prefix(view(x, v)).float() for v in range(views)], dim=1)


def fit_suffix(head: nn.Module, suffix: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor,
               select_x: torch.Tensor | None, select_y: torch.Tensor | None, recipe, generator: torch.Generator,
               reporter: Reporter | None = None) -> TrainOutcome:
    """Train ``suffix`` and ``head`` on cached prefix outputs ``train_x`` (N, views, C, H, W): one view per
    image per epoch, drawn from ``generator``; the best epoch on the selection images (view 0) is kept, as
    :func:`osd.models.training.fit` keeps it. The returned state is the trained modules' (``suffix`` and
    ``head`` as a two-module list); ``TrainOutcome.state_dict`` holds it under ``suffix.`` and ``head.``."""
    reporter = ensure(reporter)
    model = nn.ModuleDict({"suffix": suffix, "head": head})
    n, views = int(train_x.shape[0]), int(train_x.shape[1])
    opt, sched = _optimizer(model, recipe, max(1, (n + recipe.batch_size - 1) // recipe.batch_size))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    choose = select_x is not None and len(select_x) > 0
    best = TrainOutcome(copy.deepcopy(model.state_dict()), 0, -1.0 if choose else None)
    best_loss = float("inf")
    start = time.perf_counter()
    with reporter.task("training (cached prefix)", recipe.epochs) as task:
        for epoch in range(1, recipe.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator)
            picks = torch.randint(0, views, (n,), generator=generator) if recipe.augment else torch.zeros(n, dtype=torch.long)
            total, seen = 0.0, 0
            for s in range(0, n, recipe.batch_size):
                idx = order[s : s + recipe.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                x, y = train_x[idx, picks[idx]], train_y[idx]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(head(suffix(x)), y)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            row = {"epoch": epoch, "train_loss": total / max(seen, 1)}
            selection = _evaluate(model, select_x, select_y) if choose else None
            best_loss = keep_best(best, best_loss, model, row, selection, recipe, start)
            task.advance(1, loss=row["train_loss"], **({"select_acc": selection[0]} if choose else {}))
            if best.stopped_early:
                break
    best.seconds = time.perf_counter() - start
    return best


@torch.no_grad()
def _evaluate(model: nn.ModuleDict, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> tuple[float, float]:
    model.eval()
    correct, loss = 0, 0.0
    for s in range(0, len(x), batch):
        logits = model["head"](model["suffix"](x[s : s + batch, 0]))
        loss += float(nn.functional.cross_entropy(logits, y[s : s + batch], reduction="sum"))
        correct += int((logits.argmax(1) == y[s : s + batch]).sum())
    return correct / max(len(x), 1), loss / max(len(x), 1)

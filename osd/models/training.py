"""The training loop: one recipe for random init and fine-tuning, best epoch on the selection images.

The selection images (``splits.selection_fraction`` of the validation share) choose the epoch and
stop training once ``classifier.patience`` epochs were not better; without them every epoch runs and
the last is kept. Either way the images that set thresholds never choose anything.

After every epoch the loop hands a checkpoint (model, optimizer, scheduler, the augmentation
generator's and torch's RNG states, the best epoch so far, the history) to a callback; ``fit``
started with that checkpoint continues bit-identically to a run that was never interrupted.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from osd.config import ClassifierSection
from osd.data.stream import Images, in_order
from osd.data.tensors import augment, normalize
from osd.precision import Compute
from osd.progress import Reporter, ensure


@dataclass
class TrainOutcome:
    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    selection_accuracy: float | None  # None: no selection images, the last epoch is kept
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False  # patience ran out before classifier.epochs


@torch.no_grad()
def accuracy_and_loss(model: nn.Module, images: Images, device: torch.device | Compute, batch_size: int = 64
                      ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a model on images streamed from disk."""
    compute = device if isinstance(device, Compute) else Compute(torch.device(device))
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for xb, yb in images.batches(in_order(len(images), batch_size)):
        x, y = normalize(compute.inputs(xb)), yb.to(compute.device)
        with compute.autocast():
            logits = compute.output(model(x))
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return correct / max(n, 1), loss / max(n, 1)


def fit(
    model: nn.Module,
    train: Images,
    select: Images | None,
    recipe: ClassifierSection,
    device: torch.device | Compute,
    generator: torch.Generator,
    reporter: Reporter | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train for at most ``recipe.epochs``; with selection images, keep the best epoch and stop once
    ``recipe.patience`` epochs in a row were not better (higher accuracy, or equal accuracy and lower
    loss). ``device``: a device (fp32) or a :class:`Compute` (precision and memory layout)."""
    reporter = ensure(reporter)
    compute = device if isinstance(device, Compute) else Compute(torch.device(device))
    compute.model(model)
    n = len(train)
    opt, sched = _optimizer(model, recipe, max(1, (n + recipe.batch_size - 1) // recipe.batch_size))
    step = _Step(model, nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing), opt, sched, compute)
    choose = select is not None and len(select) > 0
    best = TrainOutcome(copy.deepcopy(model.state_dict()), 0, -1.0 if choose else None)
    best_loss = float("inf")
    first_epoch, elapsed = 1, 0.0
    if resume is not None:
        best, best_loss, first_epoch, elapsed = _restore(resume, model, opt, sched, generator)
    start = time.perf_counter() - elapsed
    with reporter.task("training", recipe.epochs) as task:
        task.advance(first_epoch - 1)
        for epoch in range(first_epoch, recipe.epochs + 1):
            row = {"epoch": epoch, "train_loss": _one_epoch(step, train, recipe, generator)}
            selection = accuracy_and_loss(model, select, compute) if choose else None
            best_loss = keep_best(best, best_loss, model, row, selection, recipe, start)
            if checkpoint is not None and epoch < recipe.epochs and not best.stopped_early:
                checkpoint(_checkpoint(epoch, model, opt, sched, generator, best, best_loss, time.perf_counter() - start))
            task.advance(1, loss=row["train_loss"], **({"select_acc": selection[0]} if choose else {}))
            if best.stopped_early:
                break
    best.seconds = time.perf_counter() - start
    return best


def keep_best(best: TrainOutcome, best_loss: float, model: nn.Module, row: dict[str, float],
              selection: tuple[float, float] | None, recipe: ClassifierSection, start: float) -> float:
    """One epoch recorded in ``best``: its history row; the model's state when it is the best so far on the
    selection images (higher accuracy, or equal accuracy and lower loss; without selection images every
    epoch is, so the last is kept); whether patience ran out. Returns the best selection loss so far."""
    epoch = int(row["epoch"])
    if selection is not None:
        acc, sel_loss = selection
        row.update(select_accuracy=acc, select_loss=sel_loss)
        better = acc > best.selection_accuracy or (acc == best.selection_accuracy and sel_loss < best_loss)
    else:
        acc, sel_loss, better = None, float("inf"), True  # no selection images: the last epoch
    row["seconds"] = time.perf_counter() - start
    best.history.append(row)
    if better:
        best.state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        best.best_epoch, best.selection_accuracy, best_loss = epoch, acc, sel_loss
    best.epochs_run = epoch
    best.stopped_early = bool(selection is not None and recipe.patience and epoch - best.best_epoch >= recipe.patience
                              and epoch < recipe.epochs)
    return best_loss


def _checkpoint(epoch: int, model: nn.Module, opt, sched, generator: torch.Generator, best: TrainOutcome,
                best_loss: float, seconds: float) -> dict[str, Any]:
    return {
        "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(), "best_state": best.state_dict, "best_epoch": best.best_epoch,
        "selection_accuracy": best.selection_accuracy, "best_loss": best_loss, "history": best.history,
        "seconds": seconds,
    }


def _optimizer(model: nn.Module, recipe: ClassifierSection, steps_per_epoch: int):
    if recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay,
                              nesterov=True)
    total = recipe.epochs * steps_per_epoch
    if total < 3:  # too short for a warm-up and an annealing phase: a constant rate
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    # one-cycle with a 20% warm-up; a short run (under 10 steps) warms up for 2 steps, since torch's
    # OneCycleLR divides by zero when a phase has no step
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=total,
                                                pct_start=max(0.2, 2.0 / total))
    return opt, sched


def _restore(resume: dict[str, Any], model: nn.Module, opt, sched, generator: torch.Generator
             ) -> tuple[TrainOutcome, float, int, float]:
    """A checkpoint's state back into the model, optimizer, scheduler and generators."""
    model.load_state_dict(resume["model"])
    opt.load_state_dict(resume["optimizer"])
    sched.load_state_dict(resume["scheduler"])
    generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    best = TrainOutcome(resume["best_state"], int(resume["best_epoch"]), resume["selection_accuracy"],
                        list(resume["history"]))
    return best, float(resume["best_loss"]), int(resume["epoch"]) + 1, float(resume["seconds"])


@dataclass
class _Step:
    """One optimisation step: forward and loss under autocast, backward, optimizer and schedule."""

    model: nn.Module
    loss_fn: nn.Module
    opt: Any
    sched: Any
    compute: Compute

    def __post_init__(self) -> None:
        self.scaler = self.compute.scaler()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        x, y = normalize(self.compute.inputs(xb)), yb.to(self.compute.device)
        self.opt.zero_grad(set_to_none=True)
        with self.compute.autocast():
            loss = self.loss_fn(self.compute.output(self.model(x)), y)
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        self.sched.step()
        return float(loss.detach())


def _one_epoch(step: _Step, train: Images, recipe: ClassifierSection, generator: torch.Generator) -> float:
    """One pass over the training images in a seeded order, streamed from disk; the mean training loss.

    The order and the augmentation draw on ``generator`` in this process, batch by batch, so the
    result does not depend on how many worker processes decode the images."""
    step.model.train()
    n = len(train)
    order = torch.randperm(n, generator=generator)
    index_batches = [order[s : s + recipe.batch_size] for s in range(0, n, recipe.batch_size)]
    index_batches = [b for b in index_batches if len(b) >= 2]  # BatchNorm needs two samples
    total, seen = 0.0, 0
    for xb, yb in train.batches(index_batches):
        if len(yb) < 2:
            continue
        if recipe.augment:
            xb = augment(xb, generator)
        total += step(xb, yb) * len(yb)
        seen += len(yb)
    return total / max(seen, 1)

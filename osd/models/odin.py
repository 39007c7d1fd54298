"""ODIN (Liang et al. 2018) as a pure torch function: temperature scaling and a small input perturbation.

For each image ``x`` (pixels in [0, 1]) with predicted class ``y``:
``x' = x - eps * sign(grad_x CE(f(x) / T, y))`` (the step that raises the predicted class's
tempered softmax), then the score is ``-max softmax(f(x') / T)``: **higher = more unknown**, the
convention of the rest of osd. ``eps`` is in pixel units, as in the paper (its code divides the
step by each channel's standard deviation after normalisation; perturbing the [0, 1] pixels before
``normalize`` is the same step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# The paper's defaults. Tuning them needs out-of-distribution images, which the study keeps out of
# every choice, so they are fixed here and recorded with every score.
TEMPERATURE = 1000.0
EPSILON = 0.0014


def odin_scores(net: nn.Module, pixels: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor],
                temperature: float = TEMPERATURE, eps: float = EPSILON) -> torch.Tensor:
    """``-max softmax(net(normalize(x')) / T)`` per image of ``pixels`` ((N, 3, H, W) floats in [0, 1])."""
    x = pixels.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = net(normalize(x))
        loss = nn.functional.cross_entropy(logits / temperature, logits.argmax(1))
        (grad,) = torch.autograd.grad(loss, x)  # the input's gradient only: no parameter gradients kept
    with torch.no_grad():
        perturbed = x.detach() - eps * grad.sign()
        return -torch.softmax(net(normalize(perturbed)) / temperature, dim=1).max(dim=1).values

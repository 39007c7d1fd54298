"""The training loop's schedule holds for any number of steps."""

from __future__ import annotations

import pytest
import torch

from osd.config import ClassifierSection
from osd.models.training import _optimizer


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 9, 10, 37])
def test_every_short_run_has_a_schedule(steps: int):
    """5 steps in one epoch ended in torch's ZeroDivisionError (OneCycleLR with a 1-step warm-up)."""
    model = torch.nn.Linear(2, 2)
    opt, sched = _optimizer(model, ClassifierSection(epochs=1, lr=0.1), steps)
    rates = []
    for _ in range(steps):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    assert all(r > 0 for r in rates)
    if steps >= 10:  # the one-cycle shape: up, then down below where it started
        assert max(rates) == pytest.approx(0.1, rel=0.05) and rates[-1] < rates[0]

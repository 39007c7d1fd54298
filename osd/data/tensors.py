"""Images to model input: decoded once, resized, kept as uint8 tensors; augmentation on tensors."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from osd.data.images import load_rgb
from osd.errors import DataError, OsdWarning

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pil_to_uint8(img: Image.Image, size: int) -> torch.Tensor:
    img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_images(paths: Sequence[Path], size: int, skipped: dict[str, str] | None = None
                ) -> tuple[torch.Tensor, list[int]]:
    """(N,3,size,size) uint8 tensor of the readable images, and the indices that were kept.

    An unreadable image is skipped with a warning naming it and recorded in ``skipped`` (path -> reason).
    """
    tensors, kept = [], []
    for i, p in enumerate(paths):
        try:
            tensors.append(pil_to_uint8(load_rgb(p), size))
            kept.append(i)
        except DataError as exc:
            if skipped is not None:
                skipped[str(p)] = str(exc)
            warnings.warn(f"skipping {exc}", OsdWarning, stacklevel=2)
    if not tensors:
        return torch.empty(0, 3, size, size, dtype=torch.uint8), kept
    return torch.stack(tensors), kept


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) to float, ImageNet-normalised (also used with random init, for scale)."""
    return standardize(batch.float().div_(255.0))


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] (N,3,H,W), ImageNet-normalised: differentiable in ``x`` (ODIN's step)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(batch: torch.Tensor, generator: torch.Generator, max_shift: float = 0.1) -> torch.Tensor:
    """Flips, 90-degree turns and small reflective shifts: geometry only, since steel images are grey."""
    n, _, h, w = batch.shape
    out = batch.clone()
    flips_h = torch.rand(n, generator=generator) < 0.5
    flips_v = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(0, 4, (n,), generator=generator)
    pad = int(round(max_shift * h))
    shifts = torch.randint(-pad, pad + 1, (n, 2), generator=generator) if pad else torch.zeros(n, 2, dtype=torch.long)
    padded = torch.nn.functional.pad(batch.float(), (pad, pad, pad, pad), mode="reflect") if pad else batch.float()
    for i in range(n):
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        img = padded[i, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        if flips_h[i]:
            img = img.flip(-1)
        if flips_v[i]:
            img = img.flip(-2)
        if h == w and turns[i]:
            img = torch.rot90(img, int(turns[i]), dims=(-2, -1))
        out[i] = img.to(batch.dtype)
    return out

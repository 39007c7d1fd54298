"""Device choice, threads and seeds: set in one place, passed down explicitly."""

from __future__ import annotations

import random

import numpy as np
import torch

from osd.config import Config
from osd.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def setup(cfg: Config) -> torch.device:
    """Threads and device for a run; returns the device."""
    if cfg.project.threads:
        torch.set_num_threads(cfg.project.threads)
    return resolve_device(cfg.project.device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed the global generators torchvision's random transforms use; return a generator for the rest."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

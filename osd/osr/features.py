"""Which pooled feature blocks the one-stage open-set score reads.

``penultimate``: the penultimate-layer embedding alone (one block, the plain Mahalanobis
distance). ``multilayer``: the pooled output of every residual stage, one Mahalanobis scorer
per block, as in Lee et al. (2018, "A simple unified framework for detecting out-of-distribution
samples"): early stages see texture, which is what separates steel defect classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FEATURES = ("multilayer", "penultimate")
POOLING = ("mean", "mean_std")


def block_names(available: Sequence[str], features: str, pooling: str) -> list[str]:
    """Block names, in a fixed order, out of the stored statistics ``available``."""
    stages = [k[: -len("_mean")] for k in available if k.endswith("_mean")]
    if features == "penultimate" or not stages:
        return ["penultimate"]
    stats = ("mean",) if pooling == "mean" else ("mean", "std")
    return [f"{s}_{p}" for s in sorted(stages) for p in stats]


def stack(stats: Mapping[str, np.ndarray], names: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """The blocks side by side as one matrix, and their widths."""
    parts = [np.asarray(stats[n], dtype=np.float32) for n in names]
    return np.concatenate(parts, axis=1), [p.shape[1] for p in parts]

"""Where and how a model computes: device, autocast precision and memory layout, in one value.

Pure torch, no config: :func:`osd.runtime.resources` builds a :class:`Compute` from the project's
settings and passes it down. Reduced precision is for **training** only: every score that is
compared with a threshold (the embeddings behind tau and the baselines, the logits behind kappa,
PatchCore's features) is computed in fp32 (:meth:`Compute.scoring`) in the study, ``predict`` and
the export alike, so that the torch engine and the fp32 ONNX graphs give the same scores to float
tolerance and the same decisions. A bf16 embedding moved a Mahalanobis distance from 855.9 to 850.9
and the demo's split C unknown rejection from 0.83 to 0.17 at the same rule. What decides
(Mahalanobis statistics, covariances, distances, thresholds, softmax) stays in float32 / float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix arithmetic in hardware. oneDNN's bf16 on a CPU without it is
    emulated and slower than fp32, so ``auto`` must detect, not assume."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(c()) for c in checks if c is not None)


NETWORKS = ("classifier", "patchcore")

# What ``auto`` trains in, per network and device type. bf16 training has to be shown non-inferior,
# not assumed: on NEU (accuracy near 1.0) the paired differences of one seed included zero, but a
# second real steel set lost 0.04 closed-set accuracy in bf16 (0.950 against 0.991), and "includes
# zero" is no evidence of equality. The rule (docs/reference.md, "Precision";
# examples/bf16_noninferiority.py): a one-sided 95% bound of bf16 minus fp32 above -0.01 on
# validation closed-set accuracy and pseudo-open-set AUROC, over at least three seeds per split, on
# NEU and on a harder setting, each informative (the fp32 mean at most 1 - 2 x margin: a metric at its
# ceiling cannot show a loss of the margin). Measured: NEU's validation images are at the ceiling in
# both precisions (3 splits x 3 seeds), and with 15 training images a class bf16 is not shown
# non-inferior (lower bound -0.089 on closed-set accuracy), so ``auto`` trains in fp32 everywhere;
# ``bf16`` stays a choice a user makes (1.9x faster training on a CPU with bf16 hardware). PatchCore
# only scores, and every score is fp32 (Compute.scoring).
AUTO_BF16 = {"classifier": {"cpu": False, "cuda": False, "mps": False},
             "patchcore": {"cpu": False, "cuda": False, "mps": False}}


def resolve_precision(name: str, device: torch.device, network: str = "classifier") -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for ``network`` on ``device``; an explicit precision the device
    cannot run is a ``ValueError`` (the caller names the setting)."""
    if name not in PRECISIONS:
        raise ValueError(f"{name!r}: one of {', '.join(PRECISIONS)}")
    kind = device.type
    if name == "auto":
        if not AUTO_BF16[network].get(kind, False):
            return "fp32"
        if kind == "cpu":
            return "bf16" if cpu_has_native_bf16() else "fp32"
        return "bf16" if kind == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp16" and kind == "cpu":
        raise ValueError("fp16 autocast is for accelerators; on a CPU use bf16 or fp32")
    if name == "bf16" and kind == "cpu" and not cpu_has_native_bf16():
        raise ValueError("bf16 needs a CPU with AVX512-BF16 or AMX (this one emulates it, slower than fp32)")
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("bf16 is not supported by this GPU; use fp16 or fp32")
    return name


@dataclass(frozen=True)
class Compute:
    """A device, a precision (``fp32`` | ``bf16`` | ``fp16``) and whether images are channels-last."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def on(cls, device: torch.device | str, precision: str = "auto", network: str = "classifier") -> Compute:
        """The fastest layout for ``device`` with ``precision`` resolved: channels-last convolutions on
        CPU (oneDNN) and CUDA, measured 1.48x (train) and 1.33x (forward) on a Lite0 here; MPS keeps
        the default layout."""
        device = torch.device(device)
        return cls(device, resolve_precision(precision, device, network), device.type in ("cpu", "cuda"))

    def scoring(self) -> Compute:
        """The same device and memory layout in fp32: how every score compared with a threshold is computed."""
        return Compute(self.device, "fp32", self.channels_last)

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES[self.precision]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def identity(self) -> dict[str, str]:
        """What changes the arithmetic, for cache keys and provenance."""
        return {"device": self.device.type, "precision": self.precision,
                "memory_format": "channels_last" if self.channels_last else "contiguous"}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast to the reduced precision inside the block (nothing for fp32)."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def model(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, in the memory layout (its parameters stay float32)."""
        return module.to(self.device, memory_format=self.memory_format)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device, in the memory layout."""
        x = x.to(self.device)
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    @staticmethod
    def output(x: torch.Tensor) -> torch.Tensor:
        """A network output as float32, whatever precision computed it."""
        return x.float()

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16 training needs loss scaling against gradient underflow; bf16 has float32's range."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

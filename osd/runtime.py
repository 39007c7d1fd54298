"""Device choice, threads and seeds: set in one place, passed down explicitly.

A library call that sets torch's thread count or seeds the global generators does so inside
:func:`scope` (or a function decorated with :func:`scoped`), which puts the caller's thread count
and generator states back afterwards: osd never changes process-wide state behind its caller's back.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from osd.config import ProjectSection
from osd.errors import DeviceError
from osd.types import JsonObject

if TYPE_CHECKING:
    import torch

    from osd.precision import Compute
# torch is imported inside the functions: modules that only decorate with ``scoped`` stay light


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("project.device = cuda: CUDA is not available on this machine; use cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("project.device = mps: MPS is not available on this machine; use cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Resources:
    """The project's compute, resolved once for a step: the device, each network's
    :class:`~osd.precision.Compute` (device, precision, memory layout) and the thread count.

    ``classifier`` is the training compute (``project.precision``); ``scoring`` is the classifier's
    compute for every score compared with a threshold, always fp32; ``patchcore`` only scores, so it
    is fp32 too."""

    device: torch.device
    classifier: Compute
    patchcore: Compute
    threads: int  # 0: torch's default

    @property
    def scoring(self) -> Compute:
        """The classifier's compute for embeddings and logits (fp32, the training's device and layout)."""
        return self.classifier.scoring()

    def compute(self, network: str = "classifier") -> Compute:
        """``network``'s scoring compute (fp32): ``classifier`` or ``patchcore``."""
        return self.patchcore if network == "patchcore" else self.scoring

    def precision_identity(self, network: str = "classifier") -> dict[str, str]:
        """What changes a scoring forward pass's arithmetic (device kind, precision, memory layout): part
        of the cache key of every artifact a network scores (embeddings, PatchCore features)."""
        return self.compute(network).identity()

    def compute_identity(self) -> JsonObject:
        """Where a training run computes: the device kind, training precision, memory layout and thread
        count change its arithmetic, so all belong to its cache key."""
        import torch

        return {**self.classifier.identity(), "threads": self.threads or torch.get_num_threads()}

    def setup(self) -> torch.device:
        """Set the thread count for a run and return the device. Call it inside :func:`scope`."""
        use_threads(self.threads)
        return self.device


def use_threads(threads: int) -> None:
    """torch's thread count for a run (0: leave torch's default). Call it inside :func:`scope`."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def resources(project: ProjectSection) -> Resources:
    """``project.device``, ``project.precision`` and ``project.threads`` resolved: an absent device or a
    precision the device cannot run is refused here, before any work."""
    from osd.precision import Compute

    device = resolve_device(project.device)
    try:
        computes = [Compute.on(device, project.precision, network) for network in ("classifier", "patchcore")]
    except ValueError as exc:
        raise DeviceError(f"project.precision = {project.precision}: {exc}") from None
    # PatchCore has nothing to train: its features are its scores, computed in fp32
    return Resources(device, computes[0], computes[1].scoring(), project.threads)


def cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def decode_workers(project: ProjectSection, threads: int | None = None, jobs: int = 1) -> int:
    """Image-decoding processes for one job: ``project.workers``, but on a CPU device never so many
    that jobs x (torch threads + workers) exceeds the cores: a decoder then takes a core the model
    computes on (two jobs with two workers each ran the demo grid 0.78x as fast as one job). On an
    accelerator the CPU only decodes, so the workers are the configured ones, divided between jobs.
    The results do not depend on the number of workers."""
    import torch

    share = max(1, cores() // max(jobs, 1))
    if resolve_device(project.device).type != "cpu":
        return min(project.workers, share)
    used = threads or project.threads or torch.get_num_threads()
    return max(0, min(project.workers, share - used))


@contextmanager
def scope() -> Iterator[None]:
    """Restore torch's thread count and the global random generators (Python, NumPy, torch's CPU and,
    where CUDA was initialised, its devices') on exit."""
    import torch

    threads = torch.get_num_threads()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


F = TypeVar("F", bound=Callable[..., Any])


def scoped(fn: F) -> F:
    """Run ``fn`` inside :func:`scope`."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scope():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def seed_everything(seed: int) -> torch.Generator:
    """Seed the global generators torchvision's random transforms use; return a generator for the rest.

    Call it inside :func:`scope`, which gives the caller its own generator states back.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

"""Images streamed from disk in batches: decoded in worker processes while the model computes.

Nothing holds a partition in memory: a torch ``DataLoader`` decodes the images of each batch
(``project.workers`` processes; 0 decodes in the caller's process) and yields them in the order
asked for, so the results do not depend on the number of workers. An :class:`Images` partition
keeps its worker processes for every pass (a training run's epochs) until it is closed. Randomness (the order of an
epoch, augmentation) stays with the caller's seeded generator, never in the workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from osd.data.images import load_rgb
from osd.data.tensors import pil_to_uint8
from osd.errors import DataError

# Worker processes of a one-off pass (:func:`batches`) start anew (about 0.1-0.5 s each here); below
# this many batches decoding in the calling process is faster. The images and order are the same.
MIN_BATCHES_FOR_WORKERS = 8


class ImageFiles(Dataset):
    """Item ``i``: ``(i, uint8 tensor (3, size, size), reason)``; reason is "" when the file decoded."""

    def __init__(self, paths: Sequence[Path], size: int):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, str]:
        try:
            return i, pil_to_uint8(load_rgb(self.paths[i]), self.size), ""
        except DataError as exc:  # an image that became unreadable after indexing: a row to leave out
            return i, torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(exc) or "unreadable"


def _collate(items: list[tuple[int, torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    return torch.tensor([i for i, _, _ in items]), torch.stack([x for _, x, _ in items]), [r for _, _, r in items]


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a decoding worker must not spin on the cores the model computes on


def batches(paths: Sequence[Path], size: int, index_batches: Sequence[Sequence[int]], workers: int = 0
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """``(indices, images, reasons)`` per batch of ``index_batches``, in that order."""
    if not index_batches:
        return iter(())
    import multiprocessing

    if multiprocessing.current_process().daemon:
        workers = 0  # a daemonic process (a Dask or pool worker) may not start children: decode here
    if len(index_batches) < MIN_BATCHES_FOR_WORKERS:
        workers = 0  # starting worker processes costs more than decoding a few batches here
    loader = DataLoader(ImageFiles(paths, size), batch_sampler=[list(map(int, b)) for b in index_batches],
                        num_workers=workers, collate_fn=_collate, worker_init_fn=_one_thread if workers else None,
                        prefetch_factor=2 if workers else None)
    return iter(loader)


class _Plan:
    """A batch sampler whose batches are set before each pass: one persistent ``DataLoader`` (workers
    started once) serves passes in different orders."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Images:
    """A partition on disk: image files, their class indices, the square size they are decoded at.

    With ``workers``, the decoding processes start at the first pass of at least
    ``MIN_BATCHES_FOR_WORKERS`` batches and serve every later pass until :meth:`close` (or the end of
    a ``with`` block): an epoch no longer pays for starting them."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int] | torch.Tensor, size: int, workers: int = 0):
        self.paths, self.size, self.workers = list(paths), size, workers
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self._plan: _Plan | None = None
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __enter__(self) -> Images:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the decoding processes (they also stop when the partition is garbage-collected)."""
        loader, self._loader, self._plan = self._loader, None, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def _passes(self, index_batches: Sequence[Sequence[int]]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        import multiprocessing

        if (not self.workers or len(index_batches) < MIN_BATCHES_FOR_WORKERS
                or multiprocessing.current_process().daemon):
            return batches(self.paths, self.size, index_batches, 0)
        if self._loader is None:
            self._plan = _Plan()
            self._loader = DataLoader(ImageFiles(self.paths, self.size), batch_sampler=self._plan,
                                      num_workers=self.workers, collate_fn=_collate, worker_init_fn=_one_thread,
                                      prefetch_factor=2, persistent_workers=True)
        assert self._plan is not None
        self._plan.batches = [list(map(int, b)) for b in index_batches]
        return iter(self._loader)

    def batches(self, index_batches: Sequence[Sequence[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images, labels)`` per batch, images that became unreadable left out."""
        for idx, x, reasons in self._passes(index_batches):
            ok = torch.tensor([not r for r in reasons], dtype=torch.bool)
            yield (x, self.labels[idx]) if bool(ok.all()) else (x[ok], self.labels[idx[ok]])


def in_order(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]

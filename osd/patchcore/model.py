"""The memory bank and its scoring: chunked nearest-neighbour search in matrix-multiply form.

Score sign: higher = farther from every normal patch = more anomalous.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from osd.errors import ConfigError, OsdWarning
from osd.patchcore.coreset import greedy_kcenter, random_projection
from osd.patchcore.features import to_patches
from osd.patchcore.heap import bounded_heap
from osd.patchcore.search import (
    IVFIndex,
    ProjectedIndex,
    choose_search,
    faiss_threads,
    ivf_lists,
    max_nearest,
    nearest,
    train_ivf,
)
from osd.progress import Reporter, ensure


def build_memory_bank(
    feature_maps: Iterable[torch.Tensor],
    coreset_ratio: float,
    projection_dim: int,
    generator: torch.Generator,
    reporter: Reporter | None = None,
    total: int | None = None,
    coreset: str = "chunked",
    chunk_patches: int = 20_000,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Coreset memory bank from a stream of (B,D,h,w) feature maps, with bounded memory.

    ``coreset``:
    - ``"chunked"``: the stream is cut into consecutive chunks of about ``chunk_patches`` patches and
      the greedy k-center selection keeps ``coreset_ratio`` of each chunk, as the chunk fills. At a
      fixed kept share the cost is linear in the number of patches (each chunk costs the same) and
      memory holds one chunk and the bank; every patch is covered by its own chunk's centres, so the
      bank's covering radius is the largest chunk's. A stream no longer than one chunk gives exactly
      the greedy bank. Measured against the exact greedy in ``examples/bench_patchcore_scale.py``.
    - ``"greedy"``: the exact greedy k-center over every patch (the reference): time grows with
      patches x kept patches, i.e. with the square of the data at a fixed share. Full rows go to a
      scratch file, their projection stays in memory.
    """
    if coreset == "chunked":
        return _chunked_bank(feature_maps, coreset_ratio, projection_dim, generator, reporter, total, chunk_patches)
    if coreset != "greedy":
        raise ConfigError(f"patchcore.coreset = {coreset!r}: choose chunked or greedy")
    return _greedy_bank(feature_maps, coreset_ratio, projection_dim, generator, reporter, total)


class _Projector:
    """Patch rows of a feature map, and their random projection for the selection (drawn at the first map)."""

    def __init__(self, projection_dim: int, generator: torch.Generator):
        self.projection_dim, self.generator = projection_dim, generator
        self.matrix: torch.Tensor | None = None
        self.dim = 0

    def __call__(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = to_patches(feats).contiguous().float()
        if not self.dim:
            self.dim = rows.shape[1]
            if self.projection_dim < self.dim:
                self.matrix = random_projection(self.dim, self.projection_dim, self.generator)
        return rows, (rows @ self.matrix if self.matrix is not None else rows.clone())

    def stats(self, n_rows: int, bank: torch.Tensor, t_extract: float, t_select: float, **extra: Any) -> dict[str, Any]:
        return {"patches_before": n_rows, "patches_after": int(bank.shape[0]), "dim": int(self.dim),
                "projection_dim": int(min(self.projection_dim, self.dim)), "bank_mb": bank.numel() * 4 / 2**20,
                "extract_seconds": t_extract, "select_seconds": t_select, **extra}


def _chunked_bank(feature_maps: Iterable[torch.Tensor], ratio: float, projection_dim: int,
                  generator: torch.Generator, reporter: Reporter | None, total: int | None, chunk_patches: int
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
    reporter = ensure(reporter)
    project = _Projector(projection_dim, generator)
    rows_buf: list[torch.Tensor] = []
    proj_buf: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    n_rows = buffered = chunks = 0
    t_select = 0.0

    def select() -> None:
        nonlocal buffered, chunks, t_select
        t = time.perf_counter()
        rows, points = torch.cat(rows_buf), torch.cat(proj_buf)
        rows_buf.clear()
        proj_buf.clear()
        k = max(1, int(round(ratio * len(rows))))
        chosen = greedy_kcenter(points, k, generator) if k < len(rows) else torch.arange(len(rows))
        kept.append(rows[chosen.sort().values].clone())
        buffered, chunks = 0, chunks + 1
        t_select += time.perf_counter() - t

    t0 = time.perf_counter()
    with bounded_heap(), reporter.task("patch features and coreset", total) as task:
        for feats in feature_maps:
            rows, points = project(feats)
            rows_buf.append(rows)
            proj_buf.append(points)
            buffered += rows.shape[0]
            n_rows += rows.shape[0]
            if buffered >= chunk_patches:
                select()
            task.advance(feats.shape[0], patches=n_rows)
        if buffered:
            select()
    if n_rows == 0:
        raise ValueError("no patch features: every image was unreadable")
    bank = torch.cat(kept)
    return bank, project.stats(n_rows, bank, time.perf_counter() - t0 - t_select, t_select, coreset="chunked",
                               chunks=chunks, chunk_patches=chunk_patches)


def _greedy_bank(feature_maps: Iterable[torch.Tensor], ratio: float, projection_dim: int,
                 generator: torch.Generator, reporter: Reporter | None, total: int | None
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
    reporter = ensure(reporter)
    project = _Projector(projection_dim, generator)
    projected, n_rows = [], 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="osd-patchcore-") as tmp, bounded_heap():
        store_path = Path(tmp) / "features.f32"
        with store_path.open("wb") as store, reporter.task("patch features", total) as task:
            for feats in feature_maps:
                rows, points = project(feats)
                store.write(rows.numpy().data)  # the buffer itself, no bytes copy
                projected.append(points)
                n_rows += rows.shape[0]
                task.advance(feats.shape[0], patches=n_rows)
        if n_rows == 0:
            raise ValueError("no patch features: every image was unreadable")
        t_extract = time.perf_counter() - t0
        points = torch.cat(projected)
        del projected
        k = max(1, int(round(ratio * n_rows)))
        t1 = time.perf_counter()
        chosen = greedy_kcenter(points, k, generator, reporter) if k < n_rows else torch.arange(n_rows)
        t_select = time.perf_counter() - t1
        del points
        # Plain reads of the chosen rows: a memory map would fault in whole neighbourhoods of pages
        # (the kernel's fault-around), which shows up as resident memory far beyond the bank.
        dim = project.dim
        rows_out = np.empty((len(chosen), dim), dtype=np.float32)
        row_bytes = dim * 4
        with store_path.open("rb") as fh:
            for j, i in enumerate(np.sort(chosen.numpy())):
                fh.seek(int(i) * row_bytes)
                fh.readinto(memoryview(rows_out[j]).cast("B"))
        bank = torch.from_numpy(rows_out)
    return bank, project.stats(n_rows, bank, t_extract, t_select, coreset="greedy")


SEARCHES = ("auto", "torch", "faiss", "ivf")


def _faiss_installed() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class MemoryBank:
    """Normal patch features and nearest-neighbour image scores (``score_samples``: higher = more anomalous).

    ``search``: ``"torch"`` exact (pruned, :func:`osd.patchcore.search.max_nearest`); ``"faiss"`` exact
    (faiss's flat index); ``"ivf"`` approximate (:class:`osd.patchcore.search.IVFIndex`, ``probe`` of
    its lists); ``"auto"``: exact up to ``exact_up_to`` bank rows, the inverted file above (exact when
    faiss is not installed). ``search_`` says what was used and why.
    """

    def __init__(self, bank: torch.Tensor, num_neighbors: int = 1, search: str = "torch", index_dim: int = 64, *,
                 centroids: torch.Tensor | None = None, probe: int = 16, exact_up_to: int = 50_000, seed: int = 0):
        if search not in SEARCHES:
            raise ConfigError(f"patchcore.search = {search!r}: choose {' | '.join(SEARCHES)}")
        self.bank = bank.float().contiguous()
        self.bank_sq = (self.bank * self.bank).sum(1)
        self.num_neighbors = num_neighbors
        n = int(self.bank.shape[0])
        self._auto = search == "auto"
        have_faiss = search != "torch" and _faiss_installed()
        method, why = choose_search(search, n, exact_up_to, have_faiss)
        if centroids is not None and method != "ivf":
            # a fit searched with the inverted file, loaded where that search is not chosen or possible
            warnings.warn(f"the stored PatchCore fit was scored with faiss's inverted file; here its bank is searched "
                          f"exactly ({why}), so stage-1 scores can be slightly lower than the study's", OsdWarning,
                          stacklevel=2)
        if method in ("faiss", "ivf") and not have_faiss:
            raise ConfigError(f"patchcore.search = {search!r}: faiss is not installed; pip install faiss-cpu, "
                              "or use torch (exact)")
        self.search = method
        self._faiss = None
        self.index = None
        self.ivf = None
        self.centroids: torch.Tensor | None = None
        if method == "torch" and index_dim * 4 <= self.bank.shape[1]:  # pruning pays only for a much smaller projection
            self.index = ProjectedIndex.build(self.bank, index_dim)
        if method == "ivf":
            self.centroids = centroids if centroids is not None else train_ivf(self.bank, ivf_lists(n), seed)
            self.ivf = IVFIndex(self.bank, self.centroids, probe)
        self.search_ = {"search": method, "exact": method != "ivf", "why": why, "bank_rows": n,
                        **({"lists": self.ivf.lists, "probe": self.ivf.probe} if self.ivf else {})}

    def _nearest(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.search == "faiss":
            import faiss

            with faiss_threads(torch.get_num_threads()):
                if self._faiss is None:
                    self._faiss = faiss.IndexFlatL2(self.bank.shape[1])
                    self._faiss.add(np.ascontiguousarray(self.bank.cpu().numpy()))
                d, i = self._faiss.search(np.ascontiguousarray(q.float().cpu().numpy()), k)
            return torch.from_numpy(d).clamp_min_(0).sqrt_().to(q.device), torch.from_numpy(i).to(q.device)
        if self.ivf is not None:
            d, i = (t.to(q.device) for t in self.ivf.search(q, k))
            missed = (i < 0).any(dim=1)  # the probed lists held fewer than k rows: those queries exactly
            if bool(missed.any()):
                d[missed], i[missed] = nearest(q[missed], self.bank, self.bank_sq, k)
            return d, i
        return nearest(q, self.bank, self.bank_sq, k)

    def score_patches(self, patches: torch.Tensor, patches_per_image: int) -> torch.Tensor:
        """Image scores from (B*P, D) patch rows: the max patch distance, optionally re-weighted."""
        n_img = patches.shape[0] // patches_per_image
        if self.index is not None:
            best, where, nn_idx = max_nearest(patches, patches_per_image, self.bank, self.bank_sq, self.index)
        else:
            d, idx = self._nearest(patches, 1)
            d = d[:, 0].view(-1, patches_per_image)
            best, where = d.max(dim=1)
            nn_idx = idx[:, 0].view(-1, patches_per_image)[torch.arange(n_img, device=patches.device), where]
        if self.num_neighbors <= 1:
            return best
        # The paper's re-weighting: damp the score when the nearest bank patch of the most
        # anomalous test patch itself sits in a dense region of the bank.
        test_patch = patches.view(n_img, patches_per_image, -1)[torch.arange(n_img, device=patches.device), where]
        _, support = nearest(self.bank[nn_idx], self.bank, self.bank_sq, self.num_neighbors)
        dist_support = torch.linalg.norm(self.bank[support] - test_patch.unsqueeze(1), dim=2)
        weights = 1 - torch.softmax(dist_support, dim=1)[:, 0]
        return weights * best

    def to(self, device: torch.device | str) -> MemoryBank:
        """Bank, norms and search index on ``device`` (queries must be there too). faiss runs on the CPU:
        an exact search chosen by ``auto`` becomes torch's on an accelerator."""
        if self._auto and self.search == "faiss" and torch.device(device).type != "cpu":
            self.search = "torch"
            self.search_ = {**self.search_, "search": "torch"}
        self.bank, self.bank_sq = self.bank.to(device), self.bank_sq.to(device)
        if self.index is not None:
            self.index = self.index.to(device)
        return self



class PatchCore(BaseEstimator):
    """PatchCore with scikit-learn's estimator contract, over patch feature maps.

    ``fit(feature_maps)`` streams (B,D,h,w) maps of normal images into a coreset memory bank and
    sets ``bank_`` and ``fit_stats_``; ``score_samples(feature_maps)`` returns one score per image,
    the largest nearest-neighbour distance of its patches (higher = more anomalous). The decision
    threshold is a separate calibrator (:class:`osd.osr.thresholds.AcceptanceThreshold`) fitted on
    the scores of held-out normal images.
    """

    def __init__(self, coreset_ratio: float = 0.1, projection_dim: int = 128, num_neighbors: int = 1,
                 search: str = "torch", seed: int = 0, coreset: str = "chunked", chunk_patches: int = 20_000,
                 probe: int = 16, exact_up_to: int = 50_000):
        self.coreset_ratio = coreset_ratio
        self.projection_dim = projection_dim
        self.num_neighbors = num_neighbors
        self.search = search
        self.seed = seed
        self.coreset = coreset
        self.chunk_patches = chunk_patches
        self.probe = probe
        self.exact_up_to = exact_up_to

    def _memory_for(self, bank: torch.Tensor, centroids: torch.Tensor | None = None) -> MemoryBank:
        return MemoryBank(bank, self.num_neighbors, self.search, centroids=centroids, probe=self.probe,
                          exact_up_to=self.exact_up_to, seed=self.seed)

    def fit(self, feature_maps: Iterable[torch.Tensor], reporter: Reporter | None = None,
            total: int | None = None) -> PatchCore:
        gen = torch.Generator().manual_seed(self.seed)
        self.bank_, self.fit_stats_ = build_memory_bank(feature_maps, self.coreset_ratio, self.projection_dim, gen,
                                                        reporter, total, self.coreset, self.chunk_patches)
        self._memory = self._memory_for(self.bank_)
        self.centroids_ = self._memory.centroids  # the inverted file's lists (None for an exact search)
        self.fit_stats_["search"] = self._memory.search_
        return self

    @classmethod
    def from_bank(cls, bank: torch.Tensor, num_neighbors: int = 1, search: str = "torch",
                  centroids: torch.Tensor | None = None, **params: Any) -> PatchCore:
        """A fitted detector from a stored bank (and the inverted file's stored centroids, if any)."""
        est = cls(num_neighbors=num_neighbors, search=search, **params)
        est.bank_, est.fit_stats_ = bank, {}
        est._memory = est._memory_for(bank, None if centroids is None else torch.as_tensor(centroids))
        est.centroids_ = est._memory.centroids
        return est

    def score_samples(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """(B,) image scores of (B,D,h,w) feature maps."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "bank_")  # scikit-learn's NotFittedError (a ValueError) before fit / from_bank
        patches_per_image = feature_maps.shape[2] * feature_maps.shape[3]
        return self._memory.score_patches(to_patches(feature_maps), patches_per_image)

    def to(self, device: torch.device | str) -> PatchCore:
        self._memory.to(device)
        return self

    @property
    def memory(self) -> MemoryBank:
        return self._memory

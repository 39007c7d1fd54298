"""Nearest-neighbour search for image scores: exact (pruned with a low-dimensional index), and an
approximate inverted file for banks too large to search exactly (:class:`IVFIndex`, at the end).

An image score needs only the largest nearest-neighbour distance over its patches, not every
patch's. Candidates from a PCA projection of the bank give each patch an upper bound (its exact
distance to the best few candidates); patches are then searched exactly, in decreasing order of
that bound, until the bound falls below the best exact distance found so far. The result equals
the brute-force maximum (the bound is a true distance to a bank row), at a fraction of its cost
when the projection ranks neighbours well.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


def nearest(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, k: int = 1,
            chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices) of the k nearest bank rows for each query row, chunked over queries.

    The default chunk keeps each block of squared distances near 32 MB, whatever the bank size.
    """
    chunk = chunk or max(64, (1 << 23) // max(bank.shape[0], 1))
    dists, idxs = [], []
    for s in range(0, queries.shape[0], chunk):
        q = queries[s : s + chunk]
        d2 = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, beta=1.0, alpha=-2.0)
        d2.add_((q * q).sum(1, keepdim=True))
        if k == 1:
            v, i = d2.min(dim=1, keepdim=True)
        else:
            v, i = d2.topk(k, dim=1, largest=False)
        dists.append(v.clamp_min_(0).sqrt_())
        idxs.append(i)
    if not dists:
        return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=queries.device)
    return torch.cat(dists), torch.cat(idxs)


@dataclass
class ProjectedIndex:
    """The bank's top principal directions and the bank projected onto them."""

    mean: torch.Tensor
    components: torch.Tensor  # (D, p), orthonormal columns
    projected: torch.Tensor  # (N, p)
    projected_sq: torch.Tensor  # (N,)

    def to(self, device: torch.device | str) -> ProjectedIndex:
        return ProjectedIndex(*(t.to(device) for t in (self.mean, self.components, self.projected, self.projected_sq)))

    @classmethod
    def build(cls, bank: torch.Tensor, dim: int) -> ProjectedIndex:
        mean = bank.mean(0)
        # eigenvectors of the (D, D) scatter matrix, without a centred copy of the bank
        scatter = (bank.T @ bank).double() - bank.shape[0] * torch.outer(mean, mean).double()
        _, vecs = torch.linalg.eigh(scatter)
        components = vecs[:, -min(dim, bank.shape[1]) :].flip(1).float().contiguous()
        projected = (bank @ components).sub_(mean @ components).contiguous()
        return cls(mean, components, projected, (projected * projected).sum(1))


def _candidate_bounds(patches: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, index: ProjectedIndex,
                      candidates: int, chunk: int = 2048) -> torch.Tensor:
    """Per patch, the exact distance to the nearest of its projected-space candidates (an upper bound)."""
    out = []
    shift = index.mean @ index.components
    for s in range(0, patches.shape[0], chunk):
        q = patches[s : s + chunk]
        _, cand = nearest(q @ index.components - shift, index.projected, index.projected_sq,
                          k=min(candidates, bank.shape[0]))
        dots = torch.einsum("nd,ncd->nc", q, bank[cand])
        d2 = (bank_sq[cand] - 2 * dots).add_((q * q).sum(1, keepdim=True))
        out.append(d2.min(dim=1).values.clamp_min_(0).sqrt_())
    return torch.cat(out) if out else patches.new_zeros(0)


def max_nearest(patches: torch.Tensor, patches_per_image: int, bank: torch.Tensor, bank_sq: torch.Tensor,
                index: ProjectedIndex, candidates: int = 1, block: int = 4
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: (largest nearest-neighbour distance of its patches, that patch, its nearest bank row)."""
    n_img = patches.shape[0] // patches_per_image
    bound = _candidate_bounds(patches, bank, bank_sq, index, candidates).view(n_img, patches_per_image)
    bound, order = bound.sort(dim=1, descending=True)
    dev = patches.device
    best = torch.full((n_img,), -1.0, device=dev)
    where = torch.zeros(n_img, dtype=torch.long, device=dev)
    nn_idx = torch.zeros(n_img, dtype=torch.long, device=dev)
    offsets = torch.arange(n_img, device=dev) * patches_per_image
    for pos in range(0, patches_per_image, block):
        # a patch whose bound does not beat its image's best cannot be that image's maximum
        need = bound[:, pos : pos + block] > best.unsqueeze(1)
        if not bool(need.any()):
            break
        img, col = need.nonzero(as_tuple=True)
        patch = order[img, pos + col]
        d, i = nearest(patches[offsets[img] + patch], bank, bank_sq, 1)
        d, i = d[:, 0], i[:, 0]
        top = best.scatter_reduce(0, img, d, "amax", include_self=True)
        hits = ((top[img] > best[img]) & (d == top[img])).nonzero()[:, 0]
        for j in hits.tolist():  # at most one update per image and pass
            m = int(img[j])
            if d[j] > best[m]:
                best[m], where[m], nn_idx[m] = d[j], patch[j], i[j]
    return best, where, nn_idx


# ---------------------------------------------------------------- approximate: inverted file (faiss)

def ivf_lists(n_rows: int) -> int:
    """Number of k-means lists for a bank of ``n_rows``: faiss's guideline of about 4 sqrt(N) lists,
    with at least 39 rows per list (below that k-means has too few points per centroid to train)."""
    return max(1, min(round(4 * n_rows**0.5), n_rows // 39))


@contextlib.contextmanager
def faiss_threads(threads: int) -> Iterator[None]:
    """faiss's OpenMP thread count for one search, the caller's given back afterwards."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def train_ivf(bank: torch.Tensor, lists: int, seed: int = 0) -> torch.Tensor:
    """(lists, D) k-means centroids of the bank's rows (faiss k-means, seeded): the inverted file's lists."""
    import faiss

    x = np.ascontiguousarray(bank.float().cpu().numpy())
    with faiss_threads(torch.get_num_threads()):
        # min_points_per_centroid = 1: faiss prints a raw "WARNING clustering N points to K centroids" on
        # stderr below 39 points a centroid; the list count (~4 sqrt(N)) is osd's own choice and a small
        # bank is expected, so that line would tell the user nothing they can act on
        km = faiss.Kmeans(x.shape[1], lists, niter=20, seed=seed, max_points_per_centroid=256,
                          min_points_per_centroid=1)
        km.train(x)
    return torch.from_numpy(np.asarray(km.centroids, dtype=np.float32).copy())


class IVFIndex:
    """Approximate nearest-neighbour search over the bank: faiss's ``IndexIVFFlat``.

    Every bank row sits in the list of its nearest centroid; a query is compared exactly with the
    rows of its ``probe`` nearest lists only, so the cost per query is about ``probe / lists`` of the
    exact search. The distance returned is a true distance to a bank row, so it is never below the
    exact nearest-neighbour distance: with one neighbour (``num_neighbors = 1``) a miss can only raise a
    patch's (and an image's) score.
    The centroids are stored with the detector, so the index is the same every time it is loaded.
    """

    def __init__(self, bank: torch.Tensor, centroids: torch.Tensor, probe: int):
        import faiss

        x = np.ascontiguousarray(bank.float().cpu().numpy())
        c = np.ascontiguousarray(centroids.float().cpu().numpy())
        self.lists, self.probe = int(c.shape[0]), int(min(probe, c.shape[0]))
        quantizer = faiss.IndexFlatL2(x.shape[1])
        quantizer.add(c)
        self.index = faiss.IndexIVFFlat(quantizer, x.shape[1], self.lists)
        self.index.is_trained = True  # the lists are the stored centroids: no second k-means
        with faiss_threads(torch.get_num_threads()):
            self.index.add(x)
        self.index.nprobe = self.probe
        self._quantizer = quantizer  # faiss holds a raw pointer to it: keep it alive with the index

    def search(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, indices) of the k nearest rows found, as :func:`nearest` gives them."""
        q = np.ascontiguousarray(queries.float().cpu().numpy())
        with faiss_threads(torch.get_num_threads()):
            d2, idx = self.index.search(q, k)
        return torch.from_numpy(d2).clamp_min_(0).sqrt_(), torch.from_numpy(idx)


def choose_search(search: str, n: int, exact_up_to: int, have_faiss: bool) -> tuple[str, str]:
    """(the search a bank of ``n`` rows gets, why): ``auto`` is exact up to ``exact_up_to`` rows and the
    inverted file above it (exact where faiss is not installed); anything else as configured."""
    if search != "auto":
        return search, "as configured"
    # faiss's flat index is the exact search when installed: 1.9-2.4x faster than the pruned torch
    # search on these banks (examples/bench_patchcore_search.py), the same scores
    if n <= exact_up_to:
        return ("faiss" if have_faiss else "torch"), f"exact: {n:,} bank rows <= patchcore.exact_up_to ({exact_up_to:,})"
    if have_faiss:
        return "ivf", f"approximate: {n:,} bank rows > patchcore.exact_up_to ({exact_up_to:,})"
    return "torch", (f"exact: {n:,} bank rows > patchcore.exact_up_to, but faiss is not installed "
                     "(pip install faiss-cpu for the approximate index)")

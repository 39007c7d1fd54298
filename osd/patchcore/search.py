"""Exact nearest-neighbour search for image scores, pruned with a low-dimensional index.

An image score needs only the largest nearest-neighbour distance over its patches, not every
patch's. Candidates from a PCA projection of the bank give each patch an upper bound (its exact
distance to the best few candidates); patches are then searched exactly, in decreasing order of
that bound, until the bound falls below the best exact distance found so far. The result equals
the brute-force maximum (the bound is a true distance to a bank row), at a fraction of its cost
when the projection ranks neighbours well.
"""

from __future__ import annotations

from dataclasses import dataclass

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

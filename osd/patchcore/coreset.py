"""Greedy k-center coreset selection on a random projection (PatchCore, section 3.2).

Cost is O(N * k * p) time and O(N * p) memory for N patches, k selected, p projected
dimensions: linear in N for a fixed bank size, and no N x N matrix is ever built.
"""

from __future__ import annotations

import torch

from osd.progress import Reporter, ensure


def random_projection(dim: int, out_dim: int, generator: torch.Generator) -> torch.Tensor:
    """A Gaussian Johnson-Lindenstrauss projection matrix (dim, out_dim)."""
    return torch.randn(dim, out_dim, generator=generator) / out_dim**0.5


def greedy_kcenter(
    points: torch.Tensor,
    k: int,
    generator: torch.Generator,
    reporter: Reporter | None = None,
) -> torch.Tensor:
    """Indices of ``k`` points chosen greedily to minimise the covering radius.

    Starts from a seeded random point, then repeatedly adds the point farthest from the chosen set.
    ``points`` is (N, p) float; distances are Euclidean in that space.
    """
    n = points.shape[0]
    k = max(1, min(k, n))
    x = points.float().contiguous()
    sq = (x * x).sum(1)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = first
    min_d = (sq - 2 * (x @ x[first]) + sq[first]).clamp_min_(0)
    step = max(1, k // 100)
    with ensure(reporter).task("coreset selection", k) as task:
        task.advance(1)
        buf = torch.empty(n)
        for i in range(1, k):
            nxt = int(torch.argmax(min_d))
            chosen[i] = nxt
            torch.mv(x, x[nxt], out=buf)
            buf.mul_(-2).add_(sq).add_(sq[nxt])
            torch.minimum(min_d, buf, out=min_d)
            if i % step == 0 or i == k - 1:
                task.advance(step if i % step == 0 else (i % step))
    return chosen


def covering_radius(points: torch.Tensor, centers: torch.Tensor) -> float:
    """Largest distance from any point to its nearest center (for tests and statistics)."""
    d = torch.cdist(points.float(), points[centers].float())
    return float(d.min(dim=1).values.max())

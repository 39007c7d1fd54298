"""Keep the C heap from holding on to freed activation memory while a memory bank is built.

glibc raises its mmap threshold each time a large block is freed, so the next large tensors come
from the heap, whose freed holes stay resident: over a long stream of forward passes the resident
set grows by hundreds of MB that are never used again. A fixed 1 MB threshold returns every large
tensor to the system when it is freed, at the price of faulting its pages in afresh, which is why
it is applied to fitting (long, memory-bound) and not to scoring (short, latency-bound).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

_M_MMAP_THRESHOLD = -3
_BOUNDED = 1 << 20
_RELAXED = 32 << 20  # glibc's own ceiling for the dynamic threshold on 64-bit systems


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


@contextlib.contextmanager
def bounded_heap() -> Iterator[bool]:
    """Within the block, large allocations are returned to the system on free (glibc only; else a no-op)."""
    libc = _libc()
    ok = bool(libc and libc.mallopt(_M_MMAP_THRESHOLD, _BOUNDED))
    try:
        yield ok
    finally:
        if ok:
            libc.mallopt(_M_MMAP_THRESHOLD, _RELAXED)

"""One content identity: both digests of a file come from one read, remembered per file version."""

from __future__ import annotations

import hashlib
from pathlib import Path


def test_sha256_and_the_manifests_sha1_come_from_one_read_per_file_version(tmp_path: Path):
    import os

    from osd import identity
    from osd.data.splits import file_digest

    p = tmp_path / "img.jpg"
    p.write_bytes(b"steel" * 1000)
    identity._digests.cache_clear()
    assert identity.file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    # the manifests keep sha1 (their recorded digests and the classifiers cached on them stay valid)
    assert file_digest(p) == identity.file_sha1(p) == hashlib.sha1(p.read_bytes()).hexdigest()
    info = identity._digests.cache_info()
    assert (info.misses, info.hits) == (1, 2)  # one read for both hashes
    p.write_bytes(b"other" * 1000)
    os.utime(p, ns=(1, 1))  # a new version (size and modification time): read again
    assert identity.file_sha1(p) == hashlib.sha1(b"other" * 1000).hexdigest()
    assert identity.text_digest("a,b\n") == hashlib.sha256(b"a,b\n").hexdigest()[:16]

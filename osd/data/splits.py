"""Seeded, stratified, duplicate-safe splits of NEU images and of normal images."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osd.config import SplitDef, SplitsSection
from osd.csvrows import csv_text
from osd.data.neu import NeuIndex
from osd.errors import ConfigError
from osd.identity import file_sha1, text_digest

# select: validation images that only choose the training epoch; val: the ones that only set thresholds
PARTITIONS = ("train", "epoch_select", "threshold", "test")  # named after their use


def file_digest(path: Path) -> str:
    """An image's digest in a split manifest (:func:`osd.identity.file_sha1`, memoised per file version)."""
    return file_sha1(path)


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends on the seed and a stable name, not on call order."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def duplicate_groups(paths: list[Path], digests: list[str]) -> list[list[Path]]:
    groups: dict[str, list[Path]] = {}
    for p, d in zip(paths, digests):
        groups.setdefault(d, []).append(p)
    return [g for g in groups.values() if len(g) > 1]


@dataclass(frozen=True)
class SplitEntry:
    path: Path
    label: str
    role: str  # known | unknown | normal (a held-out normal image of the defects' line: test only)
    partition: str  # train | epoch_select (chooses the epoch) | threshold (sets tau, kappa) | test
    digest: str
    rel: str = ""  # the path relative to the data root (what manifests and artifacts store)


@dataclass(frozen=True)
class SplitManifest:
    name: str
    known: tuple[str, ...]
    unknown: tuple[str, ...]
    entries: tuple[SplitEntry, ...]

    def part(self, partition: str, role: str = "known") -> list[SplitEntry]:
        return [e for e in self.entries if e.partition == partition and e.role == role]

    def test(self) -> list[SplitEntry]:
        """Known test images first, then unknown ones, then normal ones (``normal.in_domain`` only)."""
        return self.part("test", "known") + self.part("test", "unknown") + self.part("test", "normal")

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for e in self.entries:
            row = out.setdefault(e.label, {p: 0 for p in PARTITIONS})
            row[e.partition] += 1
        return out

    def to_csv(self) -> str:
        return csv_text(("path", "class", "role", "partition", "sha1"),
                        ([e.rel or str(e.path), e.label, e.role, e.partition, e.digest] for e in self.entries))

    def fingerprint(self, partitions: tuple[str, ...] | None = None) -> str:
        """Identity of the manifest (paths, labels, roles, content hashes), or of some partitions only."""
        if partitions is None:
            return text_digest(self.to_csv())
        rows = [[e.rel or str(e.path), e.label, e.role, e.partition, e.digest] for e in self.entries
                if e.partition in partitions]
        return text_digest(repr(rows))


def _rel(path: Path, root: Path) -> str:
    """The path relative to the data root, with forward slashes: moving the data folder keeps it."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def check_split_classes(name: str, sd: SplitDef, available: list[str]) -> None:
    """Every class the split ``name`` (its definition ``sd``: known, unknown) names is in the data."""
    for part in ("known", "unknown"):
        missing = [c for c in getattr(sd, part) if c not in available]
        if missing:
            raise ConfigError(
                f"splits.{name}.{part}: {', '.join(missing)} not in the NEU data (it has: {', '.join(available)})"
            )


def make_split(name: str, sd: SplitDef, s: SplitsSection, seed: int, index: NeuIndex, digests: list[str] | None = None
               ) -> SplitManifest:
    """Known classes: stratified train / epoch_select / threshold / test by image group; unknown
    classes: test only.

    ``epoch_select`` and ``threshold`` share ``splits.val_fraction``: the first choose the best epoch,
    the second set the thresholds, so no threshold rests on images that a choice has already looked at.

    Byte-identical images form one group, so they always land in the same partition. ``sd``: the
    split's definition (``known``, ``unknown``); ``s``: the ``splits`` settings (fractions,
    ``unknown_test``); ``seed``: ``project.seed``.
    """
    check_split_classes(name, sd, index.classes)
    paths = list(index.paths)
    if digests is None:
        digests = [file_digest(p) for p in paths]
    by_class: dict[str, dict[str, list[int]]] = {}
    for i, (lab, dig) in enumerate(zip(index.labels, digests)):
        by_class.setdefault(lab, {}).setdefault(dig, []).append(i)

    entries: list[SplitEntry] = []
    test_counts = []
    for cls in sd.known:
        # groups in path order: a changed file (another digest) must not reshuffle the other images
        groups = sorted(by_class[cls].values(), key=lambda g: min(str(paths[i]) for i in g))
        order = rng_for(seed, "split", cls).permutation(len(groups))
        n = sum(len(g) for g in groups)
        cuts = [round(f * n) for f in (s.train_fraction, s.train_fraction + s.val_fraction * s.selection_fraction,
                                       s.train_fraction + s.val_fraction)]
        seen, n_test = 0, 0
        for gi in order:
            part = next((p for p, cut in zip(("train", "epoch_select", "threshold"), cuts) if seen < cut), "test")
            for i in groups[gi]:
                entries.append(SplitEntry(paths[i], cls, "known", part, digests[i], _rel(paths[i], index.root)))
            seen += len(groups[gi])
            n_test += len(groups[gi]) if part == "test" else 0
        test_counts.append(n_test)
    per_unknown = round(float(np.mean(test_counts))) if s.unknown_test == "balanced" else None
    for cls in sd.unknown:
        idx = sorted((i for g in by_class[cls].values() for i in g), key=lambda i: str(paths[i]))
        order = rng_for(seed, "unknown", cls).permutation(len(idx))
        chosen = sorted(order[:per_unknown] if per_unknown is not None else order)
        for j in chosen:
            i = idx[j]
            entries.append(SplitEntry(paths[i], cls, "unknown", "test", digests[i], _rel(paths[i], index.root)))
    entries.sort(key=lambda e: (PARTITIONS.index(e.partition), e.role, e.label, str(e.path)))
    return SplitManifest(name, tuple(sd.known), tuple(sd.unknown), tuple(entries))


@dataclass(frozen=True)
class NormalSplit:
    bank: tuple[Path, ...]
    calibration: tuple[Path, ...]
    test: tuple[Path, ...]


def split_normals(paths: list[Path], bank_fraction: float, calibration_fraction: float, seed: int,
                  digests: Mapping[Path, str] | None = None) -> NormalSplit:
    """Split normal images by image (never by crop) into bank / calibration / test, seeded.

    Byte-identical images (the same ``digests`` entry) form one group and land in one partition: a
    good part whose twin sits in the memory bank scores near zero, so a twin across bank and test
    (or calibration) would inflate the pass rate. Without duplicates every group is one image and
    the split is the image-level one (the same partitions as before groups existed)."""
    paths = sorted(paths)
    n = len(paths)
    by_digest: dict[str, list[Path]] = {}
    for p in paths:
        by_digest.setdefault(digests[p] if digests is not None else str(p), []).append(p)
    groups = sorted(by_digest.values(), key=lambda g: g[0])  # each group in path order, groups by their first
    order = rng_for(seed, "normal").permutation(len(groups))
    n_bank = max(1, round(bank_fraction * n))
    n_cal = max(1, round(calibration_fraction * n)) if n >= 3 else 0
    n_bank = min(n_bank, max(1, n - n_cal - 1))
    bank: list[Path] = []
    cal: list[Path] = []
    test: list[Path] = []
    for gi in order:
        target = bank if len(bank) < n_bank else cal if len(cal) < n_cal else test
        target.extend(groups[gi])
    return NormalSplit(tuple(bank), tuple(cal), tuple(test))

"""Data steps: index the project's data, build split manifests, and check everything."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from osd import artifacts
from osd.config import SPLIT_NAMES, Config
from osd.data import images
from osd.data.neu import NeuIndex, index_neu
from osd.data.severstal import crop_boxes, index_folder, index_severstal
from osd.data.splits import (
    NormalSplit,
    SplitManifest,
    duplicate_groups,
    file_digest,
    make_split,
    split_normals,
)
from osd.errors import DataError, OsdError


@functools.lru_cache(maxsize=8)
def _neu(root: Path) -> tuple[NeuIndex, tuple[str, ...], tuple[Path, ...]]:
    index = index_neu(root)
    good, bad = images.readable(list(index.paths), "NEU")
    keep = set(good)
    index = NeuIndex(index.root, index.layout, tuple(p for p in index.paths if p in keep),
                     tuple(lab for p, lab in zip(index.paths, index.labels) if p in keep))
    digests = tuple(file_digest(p) for p in index.paths)
    return index, digests, tuple(bad)


def neu_index(cfg: Config) -> tuple[NeuIndex, list[str]]:
    index, digests, _ = _neu(cfg.path(cfg.neu.root))
    return index, list(digests)


def split_manifest(cfg: Config, name: str) -> SplitManifest:
    """The split's manifest, written to ``outputs/split_x/split_manifest.csv``."""
    index, digests = neu_index(cfg)
    manifest = make_split(cfg, name, index, digests)
    path = artifacts.Layout(cfg.output_dir).manifest(name)
    text = manifest.to_csv()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        artifacts.write_text(path, text)
    return manifest


@dataclass(frozen=True)
class NormalData:
    source: str  # "severstal" | "folder"
    split: NormalSplit
    defective: tuple[Path, ...]

    def fingerprint(self) -> str:
        def stat(p: Path) -> list[Any]:
            st = p.stat()
            return [p.name, st.st_size]

        return artifacts.cache_key(
            [stat(p) for p in self.split.bank], [stat(p) for p in self.split.calibration],
            [stat(p) for p in self.split.test],
        )


def normal_data(cfg: Config) -> NormalData:
    n = cfg.normal
    if n.severstal_root:
        idx = index_severstal(cfg.path(n.severstal_root))
        paths, defective, source = list(idx.normal), idx.defective, "severstal"
    elif n.folder:
        paths, defective, source = list(index_folder(cfg.path(n.folder))), (), "folder"
    else:
        raise DataError("no normal images configured: set normal.severstal_root or normal.folder in osd.toml")
    paths, _ = images.readable(paths, "normal")
    if len(paths) < 3:
        raise DataError(f"{len(paths)} readable normal image(s); PatchCore needs at least 3 (bank, calibration, test)")
    split = split_normals(paths, n.bank_fraction, n.calibration_fraction, cfg.project.seed)
    return NormalData(source, split, tuple(defective))


def crops_of(cfg: Config, path: Path) -> list[tuple[int, int, int, int]]:
    import numpy as np

    grey = np.asarray(images.load_rgb(path).convert("L"))
    n = cfg.normal
    return crop_boxes(grey, n.crop_size, n.crop_stride, n.dark_threshold, n.max_dark_fraction)


# ---------------------------------------------------------------- data check


@dataclass
class DataReport:
    neu_root: str
    neu_layout: str = ""
    neu_counts: dict[str, int] = field(default_factory=dict)
    image_formats: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    normal: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check_data(cfg: Config) -> DataReport:
    """Everything a user needs to know about their data; problems are collected, not raised."""
    root = cfg.path(cfg.neu.root)
    report = DataReport(neu_root=str(root))
    try:
        raw = index_neu(root)
    except OsdError as exc:
        report.problems.append(str(exc))
        raw = None
    if raw is not None:
        report.neu_layout = raw.layout
        formats: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for p in raw.paths:
            info = images.probe(p)
            if info is None:
                report.unreadable.append(str(p))
                continue
            formats[info[0]] = formats.get(info[0], 0) + 1
            size = f"{info[1][0]}x{info[1][1]}"
            sizes[size] = sizes.get(size, 0) + 1
        report.image_formats, report.image_sizes = formats, sizes
        index, digests = neu_index(cfg)
        report.neu_counts = index.counts()
        report.duplicates = [sorted(str(p) for p in g) for g in duplicate_groups(list(index.paths), digests)]
        if report.unreadable:
            report.notes.append(f"{len(report.unreadable)} unreadable NEU file(s) will be skipped")
        for name in SPLIT_NAMES:
            try:
                m = split_manifest(cfg, name)
            except OsdError as exc:
                report.problems.append(str(exc))
                continue
            report.splits[name] = {
                "known": list(m.known), "unknown": list(m.unknown), "counts": m.counts(),
                "manifest": str(artifacts.Layout(cfg.output_dir).manifest(name)),
            }
    report.normal = _check_normal(cfg, report)
    return report


def _check_normal(cfg: Config, report: DataReport) -> dict[str, Any]:
    n = cfg.normal
    if not (n.severstal_root or n.folder):
        report.notes.append("no normal images configured (normal.severstal_root / normal.folder): "
                            "the cascade's stage 1 cannot be fitted")
        return {}
    out: dict[str, Any] = {}
    try:
        if n.severstal_root:
            idx = index_severstal(cfg.path(n.severstal_root))
            out.update(source="severstal", root=str(idx.root), csv_format=idx.csv_format,
                       normal_images=len(idx.normal), defective_images=len(idx.defective),
                       missing_files=list(idx.missing))
            if idx.missing:
                report.notes.append(f"train.csv names {len(idx.missing)} image(s) not in train_images/")
        else:
            out.update(source="folder", root=str(cfg.path(n.folder)), normal_images=len(index_folder(cfg.path(n.folder))))
        data = normal_data(cfg)
        parts = {}
        for part in ("bank", "calibration", "test"):
            paths = getattr(data.split, part)
            parts[part] = {"images": len(paths), "crops": sum(len(crops_of(cfg, p)) for p in paths)}
        out["partitions"] = parts
        if any(v["crops"] == 0 for v in parts.values()):
            report.problems.append("a normal partition has no usable crops (too dark? see normal.max_dark_fraction)")
    except OsdError as exc:
        report.problems.append(str(exc))
    return out

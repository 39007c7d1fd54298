"""Severstal steel strips: ``train.csv`` in both competition formats, normal filtering, crops."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osd.data.images import is_image_name
from osd.errors import DataError


@dataclass(frozen=True)
class SeverstalIndex:
    root: Path
    csv_format: str  # "current" (ImageId,ClassId,EncodedPixels) or "old" (ImageId_ClassId,...)
    normal: tuple[Path, ...]
    defective: tuple[Path, ...]
    defect_classes: dict[str, tuple[int, ...]]  # image id -> defect class ids
    missing: tuple[str, ...]  # ids named in train.csv without a file
    masks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # image id -> RLE strings (any class)


def decode_rle(rle: str, shape: tuple[int, int], where: str = "train.csv") -> np.ndarray:
    """A Severstal run-length mask as a bool (H, W) array.

    Pixels are numbered from 1, top to bottom and then left to right (column-major), as in the
    competition: ``"start length start length ..."``.
    """
    h, w = shape
    mask = np.zeros(h * w, dtype=bool)
    try:
        nums = [int(v) for v in rle.split()]
    except ValueError:
        raise DataError(f"{where}: EncodedPixels is not a list of integers ({rle[:40]!r}...)") from None
    if len(nums) % 2:
        raise DataError(f"{where}: EncodedPixels has an odd number of values")
    for start, length in zip(nums[0::2], nums[1::2]):
        if start < 1 or length < 0 or start - 1 + length > h * w:
            raise DataError(f"{where}: run {start} {length} lies outside a {h}x{w} image")
        mask[start - 1 : start - 1 + length] = True
    return mask.reshape(w, h).T


def _class_id(value: str, path: Path, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}, line {line}: ClassId {value[:20]!r} is not an integer") from None


def read_train_csv(path: Path) -> tuple[str, dict[str, set[int]], dict[str, list[str]]]:
    """Defect class ids and RLE masks per image id; images with only empty masks map to an empty set."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets save a byte-order mark
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({str(exc)[:100]})") from None
    if not rows:
        raise DataError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    out: dict[str, set[int]] = {}
    rles: dict[str, list[str]] = {}
    if header[:3] == ["ImageId", "ClassId", "EncodedPixels"]:
        fmt = "current"
        for line, row in enumerate(rows[1:], start=2):
            if len(row) < 3:
                continue
            s = out.setdefault(row[0].strip(), set())
            if row[2].strip():
                s.add(_class_id(row[1], path, line))
                rles.setdefault(row[0].strip(), []).append(row[2].strip())
    elif header[:2] == ["ImageId_ClassId", "EncodedPixels"]:
        fmt = "old"
        for line, row in enumerate(rows[1:], start=2):
            if len(row) < 2 or "_" not in row[0]:
                continue
            image_id, class_id = row[0].strip().rsplit("_", 1)
            s = out.setdefault(image_id, set())
            if row[1].strip():
                s.add(_class_id(class_id, path, line))
                rles.setdefault(image_id, []).append(row[1].strip())
    else:
        shown = ",".join(header)
        shown = shown if len(shown) <= 60 else shown[:60] + "..."
        raise DataError(
            f"{path}: first line {shown!r} is not a header; expected ImageId,ClassId,EncodedPixels "
            "or ImageId_ClassId,EncodedPixels"
        )
    return fmt, out, rles


def index_severstal(root: str | Path) -> SeverstalIndex:
    """Normal images are those with no non-empty mask in train.csv (or no row at all)."""
    root = Path(root)
    images_dir = root / "train_images"
    csv_path = root / "train.csv"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: Severstal train_images/ folder not found; set normal.severstal_root")
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: Severstal train.csv not found next to train_images/")
    fmt, labels, rles = read_train_csv(csv_path)
    files = sorted(p for p in images_dir.iterdir() if p.is_file() and is_image_name(p))
    if not files:
        raise DataError(f"{images_dir}: no images")
    normal = tuple(p for p in files if not labels.get(p.name))
    defective = tuple(p for p in files if labels.get(p.name))
    present = {p.name for p in files}
    missing = tuple(sorted(i for i in labels if i not in present))
    classes = {k: tuple(sorted(v)) for k, v in labels.items() if v}
    masks = {k: tuple(v) for k, v in rles.items()}
    return SeverstalIndex(root, fmt, normal, defective, classes, missing, masks)


def index_folder(folder: str | Path) -> tuple[Path, ...]:
    """A plain folder of defect-free images (searched recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: normal-image folder not found; set normal.folder")
    files = tuple(sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p)))
    if not files:
        raise DataError(f"{folder}: no images in the normal-image folder")
    return files


def crop_boxes(
    grey: np.ndarray, size: int, stride: int, dark_threshold: int, max_dark_fraction: float
) -> list[tuple[int, int, int, int]]:
    """Square crop boxes (left, top, right, bottom) over an image, skipping mostly dark ones.

    The last crop of a row or column is aligned to the image edge so nothing is left out.
    Images smaller than ``size`` give one crop of their own shorter side.
    """
    h, w = grey.shape
    s = min(size, h, w)

    def starts(length: int) -> list[int]:
        pos = list(range(0, length - s + 1, stride))
        if pos[-1] != length - s:
            pos.append(length - s)
        return pos

    boxes = []
    for top in starts(h):
        for left in starts(w):
            patch = grey[top : top + s, left : left + s]
            if float((patch < dark_threshold).mean()) <= max_dark_fraction:
                boxes.append((left, top, left + s, top + s))
    return boxes

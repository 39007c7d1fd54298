"""Decode images by content (not extension) into 8-bit RGB, whatever their mode."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from osd.errors import DataError, OsdWarning

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode (L, RGB, RGBA, P, I;16, I, F) as 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode == "RGBA" or img.mode == "LA" or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image by its content and return it as RGB; raise DataError when it cannot be read."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None


def inspect(path: str | Path) -> tuple[str, tuple[int, int]] | str:
    """(format/mode, size) after decoding every pixel, or the reason the file cannot be read.

    A header check alone passes truncated files (e.g. the first 2000 bytes of a JPEG), which then
    fail in the middle of a run; decoding the whole image here catches them up front.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return f"{img.format}/{img.mode}", img.size
    except Exception as exc:  # noqa: BLE001 - any failure means "unreadable"
        return f"{type(exc).__name__}: {str(exc)[:100]}"


def probe(path: str | Path) -> tuple[str, tuple[int, int]] | None:
    """(format/mode, size) of a fully decodable image, or None; remembered per file version (path,
    size, modification time) within a process, so repeated steps do not decode every image again."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _probe(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _probe(path: str, size: int, mtime_ns: int) -> tuple[str, tuple[int, int]] | None:
    info = inspect(path)
    return None if isinstance(info, str) else info


def readable(paths: list[Path], what: str = "image") -> tuple[list[Path], list[Path]]:
    """Split paths into fully decodable and unreadable ones, warning once (naming them) for the latter."""
    good, bad = [], []
    for p in paths:
        (good if probe(p) is not None else bad).append(p)
    if bad:
        shown = ", ".join(str(b) for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipping {len(bad)} unreadable {what} file(s): {shown}", OsdWarning, stacklevel=2)
    return good, bad

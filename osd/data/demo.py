"""Deterministic synthetic data in the real layouts, so the whole product runs with no download.

NEU-like: six classes of procedurally drawn defects on a steel-like texture, 200x200 greyscale,
NEU-DET file names. Severstal-like: 1600x256 strips (normal ones plus a few defective ones with
a ``train.csv`` in the current competition format). The data is synthetic: numbers measured on it
say that the pipeline works, nothing about steel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from osd.config import NEU_CLASSES


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Brushed-steel look: horizontal streaks, low-frequency shading and grain."""
    base = rng.uniform(110, 160)
    streaks = rng.normal(0, 6, size=(h, 1)) * np.ones((1, w))
    shade = np.linspace(rng.uniform(-15, 15), rng.uniform(-15, 15), w)[None, :]
    grain = rng.normal(0, 7, size=(h, w))
    return base + streaks + shade + grain


def _draw_defect(cls: str, rng: np.random.Generator, img: Image.Image) -> None:
    """One class's defect, drawn so that it survives the demo's 64-pixel input.

    Each class differs from every other in at least two of: dark or bright, lines or blobs or
    dots, orientation, and how much of the image it covers. With look-alike classes (dark specks
    for inclusion, pits and scale alike) a 64-pixel classifier cannot tell them apart and the
    demo's open-set numbers sat at chance on some splits, which shows nothing.
    """
    d = ImageDraw.Draw(img)
    w, h = img.size

    def pt() -> tuple[float, float]:
        return float(rng.uniform(0, w)), float(rng.uniform(0, h))

    if cls == "crazing":  # a web of kinked dark cracks over the whole image
        for _ in range(rng.integers(25, 40)):
            x, y = pt()
            for _ in range(rng.integers(3, 6)):
                nx, ny = x + rng.normal(0, 16), y + rng.normal(0, 16)
                d.line([(x, y), (nx, ny)], fill=int(rng.uniform(40, 75)), width=2)
                x, y = nx, ny
    elif cls == "inclusion":  # a few thick, dark streaks along the rolling (horizontal) direction
        for _ in range(rng.integers(2, 5)):
            x, y = pt()
            lw, lh = rng.uniform(35, 80), rng.uniform(5, 9)
            d.ellipse([x - lw / 2, y, x + lw / 2, y + lh], fill=int(rng.uniform(15, 45)))
    elif cls == "patches":  # large, soft, mid-dark regions
        for _ in range(rng.integers(2, 4)):
            x, y = pt()
            r = rng.uniform(30, 55)
            d.ellipse([x - r, y - r * rng.uniform(0.6, 1.0), x + r, y + r], fill=int(rng.uniform(65, 95)))
    elif cls == "pitted_surface":  # a dense field of round pits with bright rims in one band
        y0 = rng.uniform(0, h * 0.5)
        for _ in range(rng.integers(70, 120)):
            x, y = rng.uniform(0, w), y0 + rng.uniform(0, h * 0.5)
            r = rng.uniform(2, 4)
            d.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=int(rng.uniform(185, 215)))
            d.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.uniform(20, 50)))
    elif cls == "rolled-in_scale":  # bright flakes pressed into the surface, all over it
        for _ in range(rng.integers(20, 35)):
            x, y = pt()
            lw, lh = rng.uniform(8, 18), rng.uniform(5, 12)
            pts = [(x + rng.uniform(0, lw), y + rng.uniform(0, lh)) for _ in range(5)]
            d.polygon(pts, fill=int(rng.uniform(200, 245)))
    elif cls == "scratches":  # one to three long, straight, bright lines across the rolling direction
        for _ in range(rng.integers(1, 4)):
            x, y = pt()
            ang = rng.uniform(np.pi / 4, 3 * np.pi / 4)
            length = rng.uniform(150, 280)
            dx, dy = 0.5 * length * np.cos(ang), 0.5 * length * np.sin(ang)
            d.line([(x - dx, y - dy), (x + dx, y + dy)], fill=int(rng.uniform(200, 240)),
                   width=int(rng.integers(2, 4)))
    else:  # pragma: no cover
        raise ValueError(cls)


def neu_like_image(cls: str, rng: np.random.Generator, size: int = 200) -> Image.Image:
    img = Image.fromarray(np.clip(_texture(rng, size, size), 0, 255).astype(np.uint8), mode="L")
    _draw_defect(cls, rng, img)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.2))))
    noise = rng.normal(0, 4, size=(size, size))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8), mode="L")


def clean_image(rng: np.random.Generator, size: int = 200) -> Image.Image:
    """A defect-free NEU-like image: the same texture, blur and noise as :func:`neu_like_image`, no defect."""
    img = Image.fromarray(np.clip(_texture(rng, size, size), 0, 255).astype(np.uint8), mode="L")
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.2))))
    noise = rng.normal(0, 4, size=(size, size))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8), mode="L")


def write_normals(root: str | Path, n: int = 120, seed: int = 1) -> Path:
    """Defect-free images of the demo's own line (``root/normal``): what a user with normal images of
    the same parts brings; the demo's in-domain study (``osd init --demo --in-domain``) uses them."""
    out = Path(root) / "normal"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        clean_image(rng).save(out / f"good_{i}.jpg", quality=92)
    return out


def strip_image(rng: np.random.Generator, defect_at: int | None = None, w: int = 1600, h: int = 256
                ) -> Image.Image:
    """A steel strip; with ``defect_at``, a defect drawn in the square of columns ``defect_at .. +h``."""
    arr = _texture(rng, h, w)
    if rng.uniform() < 0.5:  # the strip does not always fill the frame
        arr[:, : int(rng.uniform(100, 300))] = rng.uniform(0, 15)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if defect_at is not None:
        sub = img.crop((defect_at, 0, defect_at + h, h))
        _draw_defect(str(rng.choice(["scratches", "patches", "inclusion"])), rng, sub)
        img.paste(sub, (defect_at, 0))
    return img.filter(ImageFilter.GaussianBlur(radius=0.6)).convert("RGB")


def write_demo(
    root: str | Path, per_class: int = 60, normal_strips: int = 24, defective_strips: int = 6, seed: int = 0
) -> dict[str, Path]:
    """Write NEU-like images to ``root/NEU-DET/IMAGES`` and strips to ``root/severstal``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    neu = root / "NEU-DET" / "IMAGES"
    neu.mkdir(parents=True, exist_ok=True)
    for cls in NEU_CLASSES:
        for i in range(1, per_class + 1):
            neu_like_image(cls, rng).save(neu / f"{cls}_{i}.jpg", quality=92)
    sev = write_strips(root / "severstal", normal_strips, defective_strips, rng)
    return {"neu": root / "NEU-DET", "severstal": sev}


def write_strips(sev: Path, normal: int, defective: int, rng: np.random.Generator, prefix: str = "demo") -> Path:
    """Severstal-like strips in Severstal's layout (``train_images/``, ``train.csv``): ``normal``
    defect-free ones, then ``defective`` ones, each with one defect and its mask in train.csv."""
    (sev / "train_images").mkdir(parents=True, exist_ok=True)
    rows = ["ImageId,ClassId,EncodedPixels"]
    for i in range(normal + defective):
        # the defect sits in one 256-column square and train.csv's mask covers exactly that square
        # (column-major run-length code: the square is one run), so stage 1's in-domain test labels
        # crops by what is really drawn on them
        at = int(rng.integers(300, 1600 - 256)) if i >= normal else None
        name = f"{prefix}{i:05d}.jpg"
        strip_image(rng, at).save(sev / "train_images" / name, quality=92)
        if at is not None:
            rows.append(f"{name},{int(rng.integers(1, 5))},{at * 256 + 1} {256 * 256}")
    (sev / "train.csv").write_text("\n".join(rows) + "\n")
    return sev

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
    d = ImageDraw.Draw(img)
    w, h = img.size

    def pt() -> tuple[float, float]:
        return float(rng.uniform(0, w)), float(rng.uniform(0, h))

    if cls == "crazing":  # a web of short, kinked dark cracks
        for _ in range(rng.integers(12, 22)):
            x, y = pt()
            for _ in range(rng.integers(2, 5)):
                nx, ny = x + rng.normal(0, 14), y + rng.normal(0, 14)
                d.line([(x, y), (nx, ny)], fill=int(rng.uniform(50, 90)), width=1)
                x, y = nx, ny
    elif cls == "inclusion":  # a few dark elongated specks along the rolling direction
        for _ in range(rng.integers(3, 8)):
            x, y = pt()
            lw, lh = rng.uniform(8, 30), rng.uniform(2, 5)
            d.ellipse([x, y, x + lw, y + lh], fill=int(rng.uniform(30, 70)))
    elif cls == "patches":  # large soft dark regions
        for _ in range(rng.integers(2, 5)):
            x, y = pt()
            r = rng.uniform(18, 40)
            d.ellipse([x - r, y - r * rng.uniform(0.5, 1.2), x + r, y + r], fill=int(rng.uniform(40, 80)))
    elif cls == "pitted_surface":  # many small round pits
        for _ in range(rng.integers(40, 90)):
            x, y = pt()
            r = rng.uniform(1, 3)
            d.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.uniform(30, 80)))
    elif cls == "rolled-in_scale":  # bright and dark flakes pressed into the surface
        for _ in range(rng.integers(15, 30)):
            x, y = pt()
            lw, lh = rng.uniform(4, 12), rng.uniform(2, 6)
            pts = [(x + rng.uniform(0, lw), y + rng.uniform(0, lh)) for _ in range(5)]
            d.polygon(pts, fill=int(rng.choice([rng.uniform(30, 70), rng.uniform(190, 230)])))
    elif cls == "scratches":  # a few long, nearly straight lines
        for _ in range(rng.integers(1, 4)):
            x, y = pt()
            ang = rng.uniform(0, np.pi)
            length = rng.uniform(80, 220)
            d.line([(x, y), (x + length * np.cos(ang), y + length * np.sin(ang))],
                   fill=int(rng.choice([rng.uniform(40, 80), rng.uniform(190, 230)])), width=int(rng.integers(1, 3)))
    else:  # pragma: no cover
        raise ValueError(cls)


def neu_like_image(cls: str, rng: np.random.Generator, size: int = 200) -> Image.Image:
    img = Image.fromarray(np.clip(_texture(rng, size, size), 0, 255).astype(np.uint8), mode="L")
    _draw_defect(cls, rng, img)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.2))))
    noise = rng.normal(0, 4, size=(size, size))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8), mode="L")


def strip_image(rng: np.random.Generator, defective: bool, w: int = 1600, h: int = 256) -> Image.Image:
    arr = _texture(rng, h, w)
    if rng.uniform() < 0.5:  # the strip does not always fill the frame
        arr[:, : int(rng.uniform(100, 300))] = rng.uniform(0, 15)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if defective:
        sub = img.crop((400, 0, 1200, 256))
        _draw_defect(str(rng.choice(["scratches", "patches", "inclusion"])), rng, sub)
        img.paste(sub, (400, 0))
    return img.filter(ImageFilter.GaussianBlur(radius=0.6)).convert("RGB")


def write_demo(
    root: str | Path, per_class: int = 60, normal_strips: int = 12, defective_strips: int = 4, seed: int = 0
) -> dict[str, Path]:
    """Write NEU-like images to ``root/NEU-DET/IMAGES`` and strips to ``root/severstal``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    neu = root / "NEU-DET" / "IMAGES"
    neu.mkdir(parents=True, exist_ok=True)
    for cls in NEU_CLASSES:
        for i in range(1, per_class + 1):
            neu_like_image(cls, rng).save(neu / f"{cls}_{i}.jpg", quality=92)
    sev = root / "severstal"
    (sev / "train_images").mkdir(parents=True, exist_ok=True)
    rows = ["ImageId,ClassId,EncodedPixels"]
    for i in range(normal_strips + defective_strips):
        defective = i >= normal_strips
        name = f"demo{i:05d}.jpg"
        strip_image(rng, defective).save(sev / "train_images" / name, quality=92)
        if defective:
            rows.append(f"{name},{int(rng.integers(1, 5))},{400 * 256 + 1} {256 * 50}")
    (sev / "train.csv").write_text("\n".join(rows) + "\n")
    return {"neu": root / "NEU-DET", "severstal": sev}

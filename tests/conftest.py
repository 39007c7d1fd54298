"""Shared fixtures: tiny synthetic data trees in each layout, and the real data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osd.config import NEU_CLASSES

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _img(rng: np.random.Generator, cls_index: int, size: int = 32) -> Image.Image:
    arr = rng.normal(120, 10, size=(size, size))
    arr[:, cls_index * 4 : cls_index * 4 + 3] = 30  # a class-dependent stripe: learnable
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def write_neu(root: Path, layout: str, per_class: int = 6, classes=NEU_CLASSES) -> Path:
    rng = np.random.default_rng(0)
    prefixes = {"crazing": "Cr", "inclusion": "In", "patches": "Pa", "pitted_surface": "PS",
                "rolled-in_scale": "RS", "scratches": "Sc"}
    kaggle = {"crazing": "Crazing", "inclusion": "Inclusion", "patches": "Patches", "pitted_surface": "Pitted",
              "rolled-in_scale": "Rolled", "scratches": "Scratches"}
    for ci, cls in enumerate(classes):
        for i in range(1, per_class + 1):
            img = _img(rng, ci)
            if layout == "neu-cls":
                path = root / f"{prefixes[cls]}_{i}.bmp"
            elif layout == "neu-det":
                path = root / "IMAGES" / f"{cls}_{i}.jpg"
            elif layout == "kaggle":
                part = ("train", "valid", "test")[i % 3]
                path = root / part / kaggle.get(cls, cls) / f"img{i}.jpg"
            else:  # plain class folders
                path = root / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)
    return root


def write_severstal(root: Path, fmt: str = "current", normal: int = 6, defective: int = 2) -> Path:
    rng = np.random.default_rng(1)
    (root / "train_images").mkdir(parents=True, exist_ok=True)
    rows = ["ImageId,ClassId,EncodedPixels"] if fmt == "current" else ["ImageId_ClassId,EncodedPixels"]
    for i in range(normal + defective):
        name = f"{i:05d}.jpg"
        arr = rng.normal(120, 10, size=(64, 400)).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr, mode="L").save(root / "train_images" / name)
        bad = i >= normal
        if fmt == "current":
            if bad:
                rows.append(f"{name},3,1 10")
        else:
            for c in range(1, 5):
                rows.append(f"{name}_{c},{'1 10' if bad and c == 3 else ''}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


TINY = """
[project]
seed = 0
[neu]
root = "neu"
[normal]
severstal_root = "sev"
crop_size = 64
crop_stride = 64
[classifier]
arch = "resnet18"
weights = "none"
image_size = 32
epochs = 2
batch_size = 8
[patchcore]
backbone = "resnet18"
weights = "none"
image_size = 32
coreset_ratio = 0.2
batch_size = 4
[stats]
bootstrap = 30
[bench]
runs = 2
warmup = 1
batch_size = 4
"""


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    write_neu(tmp_path / "neu", "neu-det", per_class=10)
    write_severstal(tmp_path / "sev")
    (tmp_path / "osd.toml").write_text(TINY)
    return tmp_path


@pytest.fixture
def real_data() -> Path:
    if not (REAL / "NEU-DET").is_dir():
        pytest.skip("real data not present at ../shared/data")
    return REAL


def run_json(*args: str) -> dict:
    """Run an osd command with --json through the CLI; assert it succeeded; the parsed result."""
    import json

    from typer.testing import CliRunner

    from osd.cli.app import app

    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def ok(*args: str) -> str:
    """Run an osd command through the CLI; assert it succeeded; its stdout."""
    from typer.testing import CliRunner

    from osd.cli.app import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout

"""Stage-1 scoring: a fitted PatchCore detector applied to crops, images and decoded images.

A library module with explicit sizes (:class:`Stage1Sizes`), no project config: the study, the
detection study, ``predict`` and the ONNX engine score by the same rule. It decodes and cuts images
(:mod:`osd.data`, the floor below :mod:`osd.patchcore`), then applies the estimator.

The unit rule (:func:`image_units`): an about-square image (a NEU image) is one crop; a long one (a
Severstal strip) is cut into the crops PatchCore was fitted on and scored by their largest score.
Scores are never paired with images by position: every scored crop carries its sample id (``path``
or ``path#x0,y0,x1,y1``), and a crop that cannot be read is reported by id, not dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osd.errors import DataError, OsdWarning
from osd.progress import Reporter, ensure

Sample = tuple[Path, tuple[int, int, int, int] | None]  # a file and a crop box (None = whole image)
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Stage1Sizes:
    """What stage-1 scoring reads: the network's input size and batch, and how a long image is cut."""

    image_size: int
    batch_size: int
    crop_size: int
    crop_stride: int
    dark_threshold: int
    max_dark_fraction: float

    @classmethod
    def from_settings(cls, flat: Mapping[str, Any]) -> Stage1Sizes:
        """From dotted settings (``Config.flat`` or a fit's recorded provenance config)."""
        return cls(int(flat["patchcore.image_size"]), max(1, int(flat["patchcore.batch_size"])),
                   int(flat["normal.crop_size"]), int(flat["normal.crop_stride"]), int(flat["normal.dark_threshold"]),
                   float(flat["normal.max_dark_fraction"]))


SETTINGS = ("patchcore.image_size", "patchcore.batch_size", "normal.crop_size", "normal.crop_stride",
            "normal.dark_threshold", "normal.max_dark_fraction")


@dataclass(frozen=True)
class Stage1Spec:
    """What rebuilds a fitted stage 1 as it was made: the patch extractor (backbone, its weights, the
    layers, the projection and the seed of random-init parts) and how its bank is searched. Built from
    dotted settings (``Config.flat`` or a fit's recorded config), so ``predict`` and ``export`` apply a
    fit with the settings it recorded, never with a later ``osd.toml``."""

    backbone: str
    weights: str  # "imagenet" | "none" | a resolved file path
    layers: tuple[str, ...]
    reduce_dim: int
    seed: int
    image_size: int
    num_neighbors: int
    search: str
    ivf_probe: int
    exact_up_to: int

    @classmethod
    def from_settings(cls, flat: Mapping[str, Any], weights: str) -> Stage1Spec:
        return cls(str(flat["patchcore.backbone"]), weights, tuple(flat["patchcore.layers"]),
                   int(flat["patchcore.reduce_dim"]), int(flat["project.seed"]), int(flat["patchcore.image_size"]),
                   int(flat["patchcore.num_neighbors"]), str(flat["patchcore.search"]),
                   int(flat["patchcore.ivf_probe"]), int(flat["patchcore.exact_up_to"]))

    def detector(self, payload: Mapping[str, Any]):
        """The fitted PatchCore of a stored fit: its bank, searched as it was when fitted (the inverted
        file's stored centroids when the fit used one)."""
        from osd.patchcore.model import PatchCore

        return PatchCore.from_bank(payload["bank"], self.num_neighbors, self.search, payload.get("ivf_centroids"),
                                   seed=self.seed, probe=self.ivf_probe, exact_up_to=self.exact_up_to)


SPEC_SETTINGS = ("patchcore.backbone", "patchcore.weights", "patchcore.layers", "patchcore.reduce_dim", "project.seed",
                 "patchcore.image_size", "patchcore.num_neighbors", "patchcore.search", "patchcore.ivf_probe",
                 "patchcore.exact_up_to")


def sample_id(sample: Sample) -> str:
    path, box = sample
    return str(path) if box is None else f"{path}#{','.join(map(str, box))}"


def crop_boxes_of(path: Path, sizes: Stage1Sizes, small: list[str] | None = None) -> list[Box]:
    """The crops of one image file, darker ones left out. An image smaller than a crop is named in
    ``small`` (``name: WxH``) when a list is given, so that a caller says it once for all of them
    (:func:`warn_small`); else with a warning of its own."""
    from osd.data import images
    from osd.data.severstal import crop_boxes

    grey = np.asarray(images.load_rgb(path).convert("L"))
    if min(grey.shape) < sizes.crop_size:
        if small is not None:
            small.append(f"{path.name}: {grey.shape[1]}x{grey.shape[0]}")
        else:
            warn_small([f"{path.name}: {grey.shape[1]}x{grey.shape[0]}"], sizes)
    return crop_boxes(grey, sizes.crop_size, sizes.crop_stride, sizes.dark_threshold, sizes.max_dark_fraction)


def warn_small(small: Sequence[str], sizes: Stage1Sizes, what: str = "normal") -> None:
    """One warning for every image smaller than a crop (300 images make one line, not 300)."""
    if not small:
        return
    more = f" and {len(small) - 3} more" if len(small) > 3 else ""
    warnings.warn(f"{len(small)} {what} image(s) smaller than normal.crop_size = {sizes.crop_size} (e.g. "
                  f"{', '.join(small[:3])}{more}): each is cropped at its own short side and resized like the others",
                  OsdWarning, stacklevel=3)


def image_units(img, sizes: Stage1Sizes) -> list[Box | None]:
    """Stage 1's unit for one decoded image, the one rule of the study and ``predict``."""
    w, h = img.size
    if max(w, h) <= 1.5 * min(w, h):
        return [None]
    from osd.data.severstal import crop_boxes

    grey = np.asarray(img.convert("L"))
    boxes = crop_boxes(grey, sizes.crop_size, sizes.crop_stride, sizes.dark_threshold, sizes.max_dark_fraction)
    # an all-dark strip still gets a score (its crops regardless of darkness): never a silent gap
    return boxes or crop_boxes(grey, sizes.crop_size, sizes.crop_stride, sizes.dark_threshold, 1.0)


def crop_samples(paths: Sequence[Path], sizes: Stage1Sizes) -> list[Sample]:
    """Every crop of ``paths``; the images smaller than a crop said in one warning."""
    small: list[str] = []
    out = [(p, box) for p in paths for box in crop_boxes_of(p, sizes, small)]
    warn_small(small, sizes)
    return out


def unit_samples(paths: Sequence[Path], sizes: Stage1Sizes) -> list[Sample]:
    """Each image cut by :func:`image_units` (the rule of the test images and ``predict``)."""
    from osd.data.images import load_rgb

    return [(p, box) for p in paths for box in image_units(load_rgb(p), sizes)]


def feature_batches(extractor, samples: Sequence[Sample], sizes: Stage1Sizes, device,
                    skipped: dict[str, str] | None = None) -> Iterator[tuple[list[int], Any]]:
    """Yield (indices into ``samples``, (B,D,h,w) features) batch by batch.

    An unreadable file is skipped with one warning naming it and recorded in ``skipped``
    (sample id -> reason); the indices say which samples each batch holds.
    """
    import torch

    from osd.data.images import load_rgb
    from osd.data.tensors import normalize, pil_to_uint8

    bs = sizes.batch_size
    for s in range(0, len(samples), bs):
        batch, idx = [], []
        for i in range(s, min(s + bs, len(samples))):
            path, box = samples[i]
            try:
                img = load_rgb(path)
            except DataError as exc:
                reason = str(exc)
                if skipped is not None:
                    skipped[sample_id(samples[i])] = reason
                warnings.warn(f"stage 1 skips {reason}", OsdWarning, stacklevel=2)
                continue
            batch.append(pil_to_uint8(img.crop(box) if box else img, sizes.image_size))
            idx.append(i)
        if not batch:
            continue
        with torch.inference_mode():
            yield idx, extractor(normalize(torch.stack(batch).to(device))).cpu()


def score_crops(detector, extractor, samples: Sequence[Sample], sizes: Stage1Sizes, device,
                reporter: Reporter | None, label: str) -> tuple[np.ndarray, dict[str, str]]:
    """Scores aligned with ``samples`` (NaN where unreadable) and the unreadable ones with reasons."""
    scores = np.full(len(samples), np.nan)
    skipped: dict[str, str] = {}
    with ensure(reporter).task(label, len(samples)) as task:
        for idx, feats in feature_batches(extractor, samples, sizes, device, skipped):
            scores[idx] = detector.score_samples(feats).numpy()
            task.advance(len(idx))
    return scores, skipped


def score_pil(detector, extractor, imgs: Sequence[Any], sizes: Stage1Sizes, device) -> np.ndarray:
    """Stage-1 scores of decoded images (PIL), one per image, by :func:`image_units`."""
    import torch

    from osd.data.tensors import normalize, pil_to_uint8

    crops, owner = [], []
    for j, img in enumerate(imgs):
        for box in image_units(img, sizes):
            crops.append(pil_to_uint8(img.crop(box) if box else img, sizes.image_size))
            owner.append(j)
    scores = np.full(len(imgs), -np.inf)
    bs = sizes.batch_size
    with torch.inference_mode():
        for start in range(0, len(crops), bs):
            x = normalize(torch.stack(crops[start : start + bs]).to(device))
            part = detector.score_samples(extractor(x)).cpu().numpy()
            np.maximum.at(scores, np.asarray(owner[start : start + bs]), part)
    return scores


def score_images(detector, extractor, paths: Sequence[Path], sizes: Stage1Sizes, device, reporter: Reporter | None,
                 label: str) -> tuple[np.ndarray, dict[str, str]]:
    """Stage-1 scores of image files aligned with ``paths`` (NaN where unreadable), and the unreadable
    ones with reasons (by path)."""
    from osd.data.images import load_rgb

    scores = np.full(len(paths), np.nan)
    skipped: dict[str, str] = {}
    bs = sizes.batch_size
    with ensure(reporter).task(label, len(paths)) as task:
        for s in range(0, len(paths), bs):
            imgs, idx = [], []
            for i in range(s, min(s + bs, len(paths))):
                try:
                    imgs.append(load_rgb(paths[i]))
                    idx.append(i)
                except DataError as exc:
                    skipped[str(paths[i])] = str(exc)
                    warnings.warn(f"stage 1 skips {exc}", OsdWarning, stacklevel=2)
            if imgs:
                scores[idx] = score_pil(detector, extractor, imgs, sizes, device)
            task.advance(min(s + bs, len(paths)) - s)
    return scores, skipped

"""``osd monitor --unknowns``: the images called ``unknown`` across the batches, grouped by the
similarity of their embeddings, so that an engineer can look at one group, name it, and run the study
again with one more known class.

Embeddings: the split's classifier (its penultimate layer, in fp32 as every score), l2-normalised.
Groups: scikit-learn's agglomerative clustering (Ward); the number of groups is the one with the
best silhouette score over 2..``max_groups`` (an internal criterion on the unknown images alone: no
label and no test score chooses it), one group below 3 images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from osd import artifacts, runtime
from osd.errors import DataError
from osd.pipeline.job import Job
from osd.types import JsonObject

HOW_TO_NAME = ("to make a group a known class: copy its images into a new class folder beside the others "
               "(<neu.root>/<name>/), add the class to a split's known classes in osd.toml (or run osd init again), "
               "then osd run-all")


@dataclass(frozen=True)
class UnknownGroup:
    group: int
    size: int
    examples: list[str]
    contact_sheet: str


@dataclass(frozen=True)
class UnknownGroups:
    images: int
    groups: list[UnknownGroup]
    method: str
    silhouette: dict[int, float] = field(default_factory=dict)
    how_to_name: str = HOW_TO_NAME

    def to_dict(self) -> JsonObject:
        return {**asdict(self), "silhouette": {str(k): v for k, v in self.silhouette.items()}}


@runtime.scoped
def embed_images(job: Job, split: str, paths: list[Path]) -> np.ndarray:
    """Penultimate embeddings (fp32, l2-normalised) of ``paths`` by the split's cached classifier."""
    import torch

    from osd.data.stream import batches, in_order
    from osd.data.tensors import normalize
    from osd.pipeline.train import load_model

    cfg = job.cfg
    s = cfg.split_name(split)
    model = artifacts.require(job.layout.model(s), f"train --split {s}",
                              f"classifier of split {s}")
    res = job.resources
    res.setup()
    compute = res.scoring
    net = compute.model(load_model(model.payload, cfg.classifier.arch)).eval()
    out = np.full((len(paths), net.embedding_dim), np.nan, np.float32)
    with torch.no_grad():
        for idx, x, reasons in batches(paths, cfg.classifier.image_size, in_order(len(paths), 32), 0):
            ok = [i for i, r in enumerate(reasons) if not r]
            if ok:
                stages, _ = net.embed_stages(normalize(compute.inputs(x[ok])))
                out[[int(idx[i]) for i in ok]] = compute.output(stages["penultimate"]).cpu().numpy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1)


def choose_groups(x: np.ndarray, max_groups: int = 8) -> tuple[np.ndarray, dict[int, float]]:
    """Ward clustering with the number of groups of the best silhouette (2..max_groups)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    if len(x) < 3:
        return np.zeros(len(x), int), {}
    scores, labels = {}, {}
    for k in range(2, min(max_groups, len(x) - 1) + 1):
        lab = AgglomerativeClustering(n_clusters=k).fit_predict(x)
        scores[k], labels[k] = float(silhouette_score(x, lab)), lab
    best = max(scores, key=lambda k: scores[k])
    return labels[best], scores


def contact_sheet(paths: list[Path], out: Path, thumb: int = 96, columns: int = 6) -> Path:
    """A grid of thumbnails (up to 24) of one group's images."""
    from PIL import Image

    from osd.data.images import load_rgb

    shown = paths[:24]
    rows = max(1, -(-len(shown) // columns))
    sheet = Image.new("RGB", (columns * thumb, rows * thumb), "white")
    for i, p in enumerate(shown):
        try:
            img = load_rgb(p)
        except Exception:  # noqa: BLE001 - an unreadable image stays a white cell; the group lists it
            continue
        img.thumbnail((thumb, thumb))
        sheet.paste(img, ((i % columns) * thumb, (i // columns) * thumb))

    def write(tmp: Path) -> None:
        sheet.save(tmp, format="PNG")

    return artifacts.atomic_write(out, write)


def group_unknowns(job: Job, split: str, rows: list[JsonObject], max_groups: int = 8) -> UnknownGroups:
    """The rows called ``unknown`` (one-stage, else the cascade), embedded, grouped, each group with
    its size, a few example paths and a contact sheet under ``outputs/split_<x>/monitor/``."""
    cfg = job.cfg
    unknown = list(dict.fromkeys(r["path"] for r in rows if r.get("status", "ok") == "ok"
                                 and "unknown" in (r.get("one_stage"), r.get("cascade"))))
    if not unknown:
        raise DataError("no image was called unknown in these rows: nothing to group")
    paths = [Path(p) for p in unknown]
    x = embed_images(job, split, paths)
    keep = np.isfinite(x).all(axis=1)
    labels, scores = choose_groups(x[keep], max_groups)
    kept = [p for p, k in zip(paths, keep) if k]
    folder = job.layout.monitor(cfg.split_name(split))
    groups = []
    for g in sorted(set(labels.tolist()), key=lambda g: -int(np.sum(labels == g))):
        members = [p for p, lab in zip(kept, labels) if lab == g]
        sheet = contact_sheet(members, folder / f"unknowns_group_{len(groups) + 1}.png")
        groups.append(UnknownGroup(len(groups) + 1, len(members), [str(p) for p in members[:5]], str(sheet)))
    method = (f"agglomerative (Ward) on l2-normalised penultimate embeddings; {len(groups)} group(s) by the best "
              "silhouette score over 2..8 (no label, no test score)" if scores else "fewer than 3 images: one group")
    return UnknownGroups(len(kept), groups, method, scores)

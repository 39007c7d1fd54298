"""Step ``prefix``: the frozen blocks' output for every defect image and view, once for every split and seed.

With ``classifier.train_blocks = N >= 0`` the blocks before the last N keep their pretrained weights,
so what they compute from an image is the same in every split and seed: it is computed here once per
image content (duplicates once) and each of the 8 views of :mod:`osd.models.regimen`, stored in the
project's shared folder, and read by every split's training. The key holds the network, its weights'
identity, the input size, the cut and the images' content, never the split or the seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.pipeline.job import Job
from osd.progress import Reporter, ensure

PREFIX_ALGORITHM = "prefix/1"
PREFIX_SETTINGS = ("classifier.arch", "classifier.weights", "classifier.image_size", "classifier.train_blocks")


def prefix_key(job: Job) -> str:
    _, digests = job.neu
    return artifacts.cache_key("prefix", PREFIX_ALGORITHM, job.settings(PREFIX_SETTINGS), sorted(set(digests)),
                               job.resources.precision_identity())


@runtime.scoped
def _compute(job: Job, key: str, reporter: Reporter) -> tuple[dict[str, Any], artifacts.Provenance]:
    import torch

    from osd.data.stream import batches, in_order
    from osd.data.tensors import normalize
    from osd.models.backbones import build
    from osd.models.regimen import VIEWS, prefix_views, split_model
    from osd.pipeline.data import weights_path

    cfg, res = job.cfg, job.resources
    index, digests = job.neu
    first = {}
    for path, digest in zip(index.paths, digests):  # byte-identical images once
        first.setdefault(digest, path)
    order = sorted(first)
    paths = [first[d] for d in order]
    res.setup()
    compute = res.scoring  # fp32: the prefix is computed once and read by every split
    parts = split_model(build(cfg.classifier.arch, weights_path(cfg, cfg.classifier.weights)),
                        cfg.classifier.train_blocks)
    prefix = compute.model(parts.prefix)
    out: list[np.ndarray] = []
    kept: list[str] = []
    with reporter.task(f"frozen blocks x {VIEWS} views (shared by every split)", len(paths)) as task, torch.no_grad():
        for idx, x, reasons in batches(paths, cfg.classifier.image_size, in_order(len(paths), 32), job.workers):
            ok = [i for i, r in enumerate(reasons) if not r]
            if ok:
                out.append(prefix_views(prefix, normalize(compute.inputs(x[ok]))).cpu().numpy().astype(np.float16))
                kept += [order[int(idx[i])] for i in ok]
            task.advance(len(reasons))
    features = np.concatenate(out) if out else np.zeros((0, VIEWS, 1, 1, 1), np.float16)
    prov = artifacts.provenance(cfg, "prefix", PREFIX_ALGORITHM, key, PREFIX_SETTINGS,
                                {"weights": job.weights(cfg.classifier.weights, cfg.classifier.arch)},
                                compute=compute.identity())
    return {"digests": kept, "features": features, "trained": parts.trained, "blocks": parts.blocks}, prov


def prefix_tensor(step: artifacts.Step, entries: list, view: int | None = None):
    """The cached prefix outputs of ``entries`` (by content digest) as fp32: (n, views, C, H, W), or one ``view``."""
    import torch

    row = {d: i for i, d in enumerate(step.payload["digests"])}
    idx = [row[e.digest] for e in entries]
    feats = step.payload["features"]
    return torch.from_numpy((feats[idx] if view is None else feats[idx, view]).astype(np.float32))


def prefix_features(job: Job, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The shared prefix artifact (``{"digests", "features": (images, views, C, H, W) fp16, ...}``)."""
    reporter = ensure(reporter)
    key = prefix_key(job)
    return artifacts.cached_step(job.layout.prefix_features(key), key, lambda: _compute(job, key, reporter),
                                 force=force, on_wait=reporter.note)

"""Step ``odin``: the ODIN baseline's scores, from the split's classifier and its images.

ODIN needs the gradient of the classifier's output with respect to every image, so unlike the other
baselines (which read the cached embeddings and logits) it runs the classifier again over the
threshold and test images. It is opt-in (``osr.baselines`` with ``"odin"``): about 6x a plain
forward pass per image on a CPU (``examples/bench_odin_cost.py``). The scores are kept row for row
in the order of the embeddings artifact, so the evaluation joins them to the same images.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.errors import ArtifactError, OsdWarning
from osd.osr.embeddings import Embeddings
from osd.pipeline.job import Job
from osd.pipeline.train import TRAIN_SECTIONS, embedded, load_model, trained
from osd.progress import Reporter, ensure

ODIN_ALGORITHM = "odin/1"
ODIN_PARTS = ("threshold", "test_known", "test_unknown")  # the threshold's images and the test images
BATCH = 32


@runtime.scoped
def _odin(job: Job, split: str, model: artifacts.Step, emb: artifacts.Step, key: str, reporter: Reporter
          ) -> tuple[dict[str, Any], artifacts.Provenance]:

    from osd.data.stream import batches, in_order
    from osd.data.tensors import standardize
    from osd.models.odin import EPSILON, TEMPERATURE, odin_scores

    cfg = job.cfg
    device = job.resources.setup()
    net = load_model(model.payload, cfg.classifier.arch).to(device).requires_grad_(False)
    where = {e.rel: e.path for e in job.manifest(split).entries if e.rel}
    parts = Embeddings.from_payload(emb.payload).parts
    rels = {part: list(parts[part].paths) for part in ODIN_PARTS}
    payload: dict[str, Any] = {"temperature": TEMPERATURE, "epsilon": EPSILON}
    with reporter.task("ODIN scores", sum(map(len, rels.values()))) as task:
        for part, names in rels.items():
            missing = [r for r in names if r not in where]
            if missing:
                raise ArtifactError(f"split {split}: the embeddings name {missing[0]!r}, which the split's manifest "
                                    "no longer holds", rebuild=f"embed --split {split} --force")
            scores = np.full(len(names), np.nan)
            for idx, x, reasons in batches([where[r] for r in names], cfg.classifier.image_size,
                                           in_order(len(names), BATCH), cfg.project.workers):
                ok = [i for i, r in enumerate(reasons) if not r]
                for r in filter(None, reasons):  # embedded once, unreadable now: a NaN row the evaluation refuses
                    warnings.warn(f"skipping {r}", OsdWarning, stacklevel=2)
                if ok:
                    pixels = x[ok].to(device).float().div_(255.0)
                    s = odin_scores(net, pixels, standardize, TEMPERATURE, EPSILON)
                    scores[idx[ok].numpy()] = s.cpu().numpy()
                task.advance(len(reasons))
            payload[part] = scores
    prov = artifacts.provenance(cfg, "odin", ODIN_ALGORITHM, key, TRAIN_SECTIONS,
                                {"classifier": model.id, "embeddings": emb.id}, split=split,
                                odin={"temperature": TEMPERATURE, "epsilon": EPSILON})
    return payload, prov


def odin_scored(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The split's ODIN scores (threshold, known test and unknown test images), cached on the classifier
    and embeddings artifacts: rows in the embeddings' order, higher = more unknown."""
    from osd.models.odin import EPSILON, TEMPERATURE

    cfg = job.cfg
    reporter = ensure(reporter)
    split = cfg.split_name(split)
    model = trained(job, split, reporter=reporter)
    emb = embedded(job, split, reporter=reporter)
    key = artifacts.cache_key("odin", ODIN_ALGORITHM, model.id, emb.id, TEMPERATURE, EPSILON, cfg.classifier.image_size)
    path = job.layout.odin(split)
    return artifacts.cached_step(path, key, lambda: _odin(job, split, model, emb, key, reporter), force=force,
                                 on_wait=reporter.note)

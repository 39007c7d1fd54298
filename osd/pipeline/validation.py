"""Step ``validate``: a regimen's validation signals, never a test score.

- **Closed-set accuracy** of the split's classifier on its threshold images (known validation images
  no choice has seen).
- **Leave-one-known-class-out AUROC** of the one-stage score: for each known class, a classifier is
  trained *without it* (same regimen, same recipe), the Mahalanobis scorer fitted on the other classes'
  training embeddings, and the held-out class's threshold images scored against the other classes'
  ones (the held-out class as the unknown). A network that never saw the class cannot have learnt to
  place it, unlike the pseudo-open-set check that refits only the head (its backbone saw every class).

With a cached prefix (``classifier.train_blocks >= 0``) each of those trainings takes seconds; with
full fine-tuning each is a whole training (the known classes' count of them per split), which is why
the step runs on demand (``osd validate``), not inside ``run-all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.pipeline.job import Job
from osd.progress import Reporter, ensure
from osd.records import Record

VALIDATE_ALGORITHM = "validate/1"


@dataclass(frozen=True)
class ValidationResult(Record):
    """A split's validation signals under its regimen."""

    split: str
    regimen: str
    closed_set_accuracy: float
    n_threshold: int
    loko_auroc: dict[str, float]  # held-out class -> AUROC of its threshold images against the others'
    seconds: float
    cached: bool = False
    provenance: artifacts.Provenance = field(default_factory=artifacts.Provenance.empty)

    @property
    def loko_mean(self) -> float:
        vals = [v for v in self.loko_auroc.values() if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    @classmethod
    def from_step(cls, step: artifacts.Step) -> ValidationResult:
        p = step.payload
        return cls(p["split"], p["regimen"], float(p["closed_set_accuracy"]), int(p["n_threshold"]),
                   {str(k): float(v) for k, v in p["loko_auroc"].items()}, float(p["seconds"]), step.cached,
                   step.lineage)


def regimen_name(train_blocks: int) -> str:
    return "full fine-tuning" if train_blocks < 0 else f"last {train_blocks} block(s) + head, prefix cached"


def _embed_parts(job: Job, model, entries: list, reporter: Reporter) -> np.ndarray:
    """Penultimate embeddings of ``entries`` (fp32), through the shared prefix when the regimen caches it."""
    import torch

    cfg = job.cfg
    model.eval()
    if cfg.classifier.train_blocks >= 0:
        from osd.models.regimen import split_model
        from osd.pipeline.prefix import prefix_features, prefix_tensor

        parts = split_model(model.features, cfg.classifier.train_blocks)
        parts.suffix.eval()
        x = prefix_tensor(prefix_features(job, reporter=reporter), entries, view=0)
        with torch.no_grad():
            return np.concatenate([parts.suffix(x[s : s + 256]).numpy() for s in range(0, len(x), 256)] or
                                  [np.zeros((0, model.embedding_dim), np.float32)])
    from osd.data.stream import batches, in_order
    from osd.data.tensors import normalize

    out = []
    with torch.no_grad():
        for _, x, reasons in batches([e.path for e in entries], cfg.classifier.image_size, in_order(len(entries), 64)):
            ok = [i for i, r in enumerate(reasons) if not r]
            out.append(model.features(normalize(x[ok])).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.embedding_dim), np.float32)


def _train_without(job: Job, split: str, held_out: str, reporter: Reporter):
    """The split's classifier trained without ``held_out`` (same regimen and recipe); the model."""
    from osd.data.stream import Images
    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier
    from osd.models.training import fit
    from osd.pipeline.data import weights_path
    from osd.pipeline.train import _entries

    cfg, manifest = job.cfg, job.manifest(split)
    classes = [c for c in manifest.known if c != held_out]
    gen = runtime.seed_everything(cfg.project.seed)
    model = EmbeddingClassifier(build(cfg.classifier.arch, weights_path(cfg, cfg.classifier.weights)), len(classes))
    chosen = {p: [e for e in _entries(manifest, p) if e.label in classes] for p in ("train", "epoch_select")}
    if cfg.classifier.train_blocks >= 0:
        import torch

        from osd.models.regimen import fit_suffix, split_model
        from osd.pipeline.prefix import prefix_features, prefix_tensor

        shared = prefix_features(job, reporter=reporter)

        def xy(entries):
            return prefix_tensor(shared, entries), torch.tensor([classes.index(e.label) for e in entries],
                                                                dtype=torch.long)

        parts = split_model(model.features, cfg.classifier.train_blocks)
        sel = xy(chosen["epoch_select"]) if chosen["epoch_select"] else (None, None)
        outcome = fit_suffix(model.head, parts.suffix, *xy(chosen["train"]), *sel, cfg.classifier, gen, reporter)
        torch.nn.ModuleDict({"suffix": parts.suffix, "head": model.head}).load_state_dict(outcome.state_dict)
        return model, classes
    res = job.resources
    data = {p: Images([e.path for e in es], [classes.index(e.label) for e in es], cfg.classifier.image_size,
                      job.workers) for p, es in chosen.items()}
    try:
        outcome = fit(model, data["train"], data["epoch_select"], cfg.classifier, res.classifier, gen, reporter)
    finally:
        for images in data.values():
            images.close()
    model.load_state_dict(outcome.state_dict)
    return model, classes


def validation_key(job: Job, split: str, model_id: str) -> str:
    return artifacts.cache_key("validate", VALIDATE_ALGORITHM, model_id, job.settings(("classifier", "osr",
                               "project.seed")), job.manifest(split).fingerprint())


@runtime.scoped
def _validate(job: Job, split: str, model_step: artifacts.Step, key: str, reporter: Reporter
              ) -> tuple[dict[str, Any], artifacts.Provenance]:
    import time

    from sklearn.metrics import roc_auc_score

    from osd.osr.mahalanobis import MahalanobisScorer
    from osd.pipeline.train import TRAIN_SECTIONS, _entries, load_model

    cfg, manifest = job.cfg, job.manifest(split)
    job.resources.setup()
    start = time.perf_counter()
    threshold = _entries(manifest, "threshold")
    own = load_model(model_step.payload, cfg.classifier.arch)
    classes = list(model_step.payload["classes"])
    emb = _embed_parts(job, own, threshold, reporter)
    import torch

    with torch.no_grad():
        pred = own.head(torch.from_numpy(emb)).argmax(1).numpy()
    truth = np.array([classes.index(e.label) for e in threshold])
    loko = {}
    with reporter.task(f"leave-one-known-class-out, split {split}", len(manifest.known)) as task:
        for c in manifest.known:
            model, kept = _train_without(job, split, c, reporter)
            train = [e for e in _entries(manifest, "train") if e.label in kept]
            scorer = MahalanobisScorer(cfg.osr.covariance, cfg.osr.normalize).fit(
                _embed_parts(job, model, train, reporter), np.array([kept.index(e.label) for e in train]))
            scores = scorer.score_samples(_embed_parts(job, model, threshold, reporter))
            held = np.array([e.label == c for e in threshold])
            loko[c] = float(roc_auc_score(held, scores)) if 0 < held.sum() < len(held) else float("nan")
            task.advance(1)
    payload = {"split": split, "regimen": regimen_name(cfg.classifier.train_blocks),
               "closed_set_accuracy": float(np.mean(pred == truth)) if len(truth) else float("nan"),
               "n_threshold": len(threshold), "loko_auroc": loko, "seconds": time.perf_counter() - start}
    prov = artifacts.provenance(cfg, "validate", VALIDATE_ALGORITHM, key, (*TRAIN_SECTIONS, "osr"),
                                {"classifier": model_step.id, "manifest": manifest.fingerprint()}, split=split)
    return payload, prov


def validate(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> ValidationResult:
    """The split's validation signals (closed-set accuracy, leave-one-known-class-out AUROC); cached."""
    from osd.pipeline.train import trained

    reporter = ensure(reporter)
    split = job.split_name(split)
    model = trained(job, split, reporter=reporter)
    key = validation_key(job, split, model.id)
    path = job.layout.validation(split)
    return ValidationResult.from_step(artifacts.cached_step(path, key, lambda: _validate(job, split, model, key,
                                                                                         reporter),
                                                            force=force, on_wait=reporter.note))

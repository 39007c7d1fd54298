"""Steps ``train`` and ``embed``: the split's classifier and its penultimate-layer embeddings.

The embeddings' cache key holds the id of the classifier artifact they were computed from, so
``osd train --force`` invalidates them (and everything downstream) even when the config is unchanged.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.errors import OsdWarning
from osd.osr.embeddings import NORMAL_PART, PARTS, EmbeddedPart, Embeddings
from osd.pipeline.job import Job
from osd.progress import Reporter, ensure
from osd.records import Record

# Bump when the meaning of the trained model or of the stored embeddings changes.
TRAIN_ALGORITHM = "train/5"  # 5: early stopping, precision + memory layout; 4: key holds device + threads
# 7: scored in fp32 whatever the training precision; 6: key holds precision + memory layout; 5: partition
# "threshold" (was "val")
EMBED_ALGORITHM = "embed/7"
TRAIN_SECTIONS = ("classifier", "splits", "neu.root", "project.seed")



def _entries(manifest, part: str):
    if part == "test_known":
        return manifest.part("test", "known")
    if part == "test_unknown":
        return manifest.part("test", "unknown")
    if part == NORMAL_PART:
        return manifest.part("test", "normal")
    return manifest.part(part, "known")


def train_key(job: Job, split: str) -> str:
    m = job.manifest(split)
    # training and selection images only: a change to the threshold or test images never retrains;
    # the device and the thread count change the training arithmetic, so they are part of the key
    return artifacts.cache_key("train", TRAIN_ALGORITHM, job.settings(("classifier", "project.seed")),
                               m.fingerprint(("train", "epoch_select")), job.resources.compute_identity())


@dataclass(frozen=True)
class TrainResult(Record):
    """The classifier step's record: a view of its artifact (``model.npz``), never recomputed."""

    split: str
    arch: str
    weights: str
    classes: list[str]
    best_epoch: int
    selection_accuracy: float | None  # on the select images; None when the last epoch is kept
    seconds: float
    cached: bool
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    precision: str = "fp32"
    trained_blocks: list[str] | None = None  # None: every block (full fine-tuning); else the blocks trained
    path: str = ""
    artifact_id: str = ""
    provenance: artifacts.Provenance = field(default_factory=artifacts.Provenance.empty)

    @classmethod
    def from_step(cls, step: artifacts.Step, split: str) -> TrainResult:
        p = step.payload
        return cls(split, p["arch"], p["weights"], list(p["classes"]), p["best_epoch"], p["selection_accuracy"],
                   p["seconds"], step.cached, p["history"], int(p.get("epochs_run", len(p["history"]))),
                   bool(p.get("stopped_early", False)), str(p.get("precision", "fp32")),
                   None if p.get("trained_blocks") is None else list(p["trained_blocks"]), str(step.path), step.id,
                   step.lineage)


def load_model(payload: dict[str, Any], arch: str):
    """The classifier a training payload holds (``arch``: the project's, for payloads that predate its record)."""
    import torch

    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier

    model = EmbeddingClassifier(build(payload.get("arch", arch), "none"), len(payload["classes"]))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in payload["state_dict"].items()})
    return model.eval()


def retrain_reason(job: Job, path: Path, key: str, force: bool) -> str:
    """Why a classifier on disk is not the one asked for (the settings, the compute or the images
    differ), so that a retrain over minutes never starts unexplained; "" when none is on disk."""
    cfg = job.cfg
    if force:
        return "--force"
    old = artifacts.peek(path)
    if not old or old.get("key") == key:
        return ""
    prov = artifacts.Provenance.of(old.get("provenance"))
    now = job.resources.compute_identity()
    recorded = prov.get("compute")
    changed = [f"{k} {v} (now {now.get(k)})" for k, v in (recorded if isinstance(recorded, dict) else {}).items()
               if now.get(k) != v]
    changed += cfg.differences(prov.config)
    return ("the cached classifier was made with " + "; ".join(changed[:3]) if changed
            else "the training or epoch-selection images changed since the cached classifier was made")


@runtime.scoped
def _train(job: Job, split: str, key: str, force: bool, reporter: Reporter
           ) -> tuple[dict[str, Any], artifacts.Provenance]:
    """Train, checkpointing every epoch; a checkpoint of the same key left by a killed run is resumed."""
    import torch

    from osd.data.stream import Images
    from osd.models.backbones import build, describe_weights
    from osd.models.classifier import EmbeddingClassifier
    from osd.models.training import fit
    from osd.pipeline.data import weights_path

    cfg, manifest, res = job.cfg, job.manifest(split), job.resources
    ckpt_path = job.layout.checkpoint(split)
    resume = None if force else artifacts.load(ckpt_path, key)
    res.setup()
    compute = res.classifier
    device = compute.device
    gen = runtime.seed_everything(cfg.project.seed)
    classes = list(manifest.known)
    if cfg.classifier.train_blocks >= 0:  # the cached-prefix regimen: only the last blocks run per split
        model = EmbeddingClassifier(build(cfg.classifier.arch, weights_path(cfg, cfg.classifier.weights)), len(classes))
        return _train_suffix(job, split, key, model, classes, reporter)
    data = {}
    workers = job.workers
    for part in ("train", "epoch_select"):  # streamed from disk batch by batch: memory flat in their number
        entries = _entries(manifest, part)
        data[part] = Images([e.path for e in entries], [classes.index(e.label) for e in entries],
                            cfg.classifier.image_size, workers)
    reporter.note(f"split {split}: training {cfg.classifier.arch} ({describe_weights(cfg.classifier.weights)} "
                  f"weights) on {len(data['train'])} images, {len(classes)} classes, device {device}, "
                  f"{compute.precision}" + (f"; resuming after epoch {resume['epoch']}" if resume else ""))
    model = EmbeddingClassifier(build(cfg.classifier.arch, weights_path(cfg, cfg.classifier.weights)), len(classes))
    # deterministic kernels on CPU for this run only; the caller's setting is restored afterwards
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    try:
        outcome = fit(model, data["train"], data["epoch_select"], cfg.classifier, compute, gen, reporter,
                      checkpoint=lambda state: artifacts.save(ckpt_path, key, state), resume=resume)
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
        for images in data.values():
            images.close()
    payload = {
        "classes": classes, "state_dict": outcome.state_dict, "best_epoch": outcome.best_epoch,
        "selection_accuracy": outcome.selection_accuracy, "n_select": len(data["epoch_select"]),
        "history": outcome.history, "seconds": outcome.seconds, "epochs_run": outcome.epochs_run,
        "stopped_early": outcome.stopped_early, "precision": compute.precision,
        "weights": describe_weights(cfg.classifier.weights), "arch": cfg.classifier.arch,
    }
    prov = artifacts.provenance(cfg, "train", TRAIN_ALGORITHM, key, TRAIN_SECTIONS,
                                {"manifest_train_select": manifest.fingerprint(("train", "epoch_select")),
                                 "weights": job.weights(cfg.classifier.weights, cfg.classifier.arch)},
                                split=split, compute=res.compute_identity())
    return payload, prov


def _train_suffix(job: Job, split: str, key: str, model, classes: list[str], reporter: Reporter
                  ) -> tuple[dict[str, Any], artifacts.Provenance]:
    """Train the last ``classifier.train_blocks`` blocks and the head on the shared prefix's outputs
    (:mod:`osd.pipeline.prefix`); the classifier saved is the whole network, as the full regimen saves it."""
    import torch

    from osd.models.backbones import describe_weights
    from osd.models.regimen import fit_suffix, split_model
    from osd.pipeline.prefix import prefix_features, prefix_tensor

    cfg, manifest = job.cfg, job.manifest(split)
    shared = prefix_features(job, reporter=reporter)
    cached = set(shared.payload["digests"])  # an image unreadable when the prefix was made is left out
    gen = runtime.seed_everything(cfg.project.seed)

    def part(name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        entries = [e for e in _entries(manifest, name) if e.digest in cached]
        x = prefix_tensor(shared, entries)
        return x, torch.tensor([classes.index(e.label) for e in entries], dtype=torch.long), len(entries)

    train_x, train_y, n_train = part("train")
    select_x, select_y, n_select = part("epoch_select")
    parts = split_model(model.features, cfg.classifier.train_blocks)
    reporter.note(f"split {split}: training {', '.join(parts.trained) or 'no block'} and the head of "
                  f"{cfg.classifier.arch} ({describe_weights(cfg.classifier.weights)} weights) on the shared frozen "
                  f"blocks' output of {n_train} images x {train_x.shape[1]} views, {len(classes)} classes")
    outcome = fit_suffix(model.head, parts.suffix, train_x, train_y, select_x if n_select else None,
                         select_y if n_select else None, cfg.classifier, gen, reporter)
    torch.nn.ModuleDict({"suffix": parts.suffix, "head": model.head}).load_state_dict(outcome.state_dict)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "classes": classes, "state_dict": state, "best_epoch": outcome.best_epoch,
        "selection_accuracy": outcome.selection_accuracy, "n_select": n_select, "history": outcome.history,
        "seconds": outcome.seconds, "epochs_run": outcome.epochs_run, "stopped_early": outcome.stopped_early,
        "precision": "fp32", "weights": describe_weights(cfg.classifier.weights), "arch": cfg.classifier.arch,
        "trained_blocks": parts.trained,
    }
    prov = artifacts.provenance(cfg, "train", TRAIN_ALGORITHM, key, TRAIN_SECTIONS,
                                {"manifest_train_select": manifest.fingerprint(("train", "epoch_select")),
                                 "weights": job.weights(cfg.classifier.weights, cfg.classifier.arch),
                                 "prefix": shared.id}, split=split, compute=job.resources.compute_identity())
    return payload, prov


def trained(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The split's classifier artifact: cached, or trained now under the artifact's lock."""
    from osd.models.classifier import check_classifier

    cfg = job.cfg
    reporter = ensure(reporter)
    split = job.split_name(split)
    check_classifier(cfg.classifier.arch, cfg.classifier.image_size)  # on the meta device, before any data is read
    key = train_key(job, split)
    path = job.layout.model(split)

    def compute() -> tuple[dict[str, Any], artifacts.Provenance]:
        why = retrain_reason(job, path, key, force)
        if why:
            reporter.note(f"split {split}: training anew: {why}")
        return _train(job, split, key, force, reporter)

    step = artifacts.cached_step(path, key, compute, force=force, on_wait=reporter.note)
    if not step.cached:  # only once the model is written: a full disk leaves no file beside a model never saved,
        layout = job.layout  # and the checkpoint to resume from stays until then
        layout.checkpoint(split).unlink(missing_ok=True)
        artifacts.write_json(layout.history(split), step.payload["history"])
        artifacts.write_json(layout.classifier_config(split), cfg.to_dict())
    return step


def train(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """Train (or load from cache) the classifier of ``split``; a killed run resumes from its last epoch."""
    return TrainResult.from_step(trained(job, split, force, reporter), split)


@dataclass(frozen=True)
class EmbedResult(Record):
    """The embed step's record: a view of its artifact (``embeddings.npz``)."""

    split: str
    counts: dict[str, int]
    dim: int
    images_per_second: float
    cached: bool
    path: str
    artifact_id: str = ""
    provenance: artifacts.Provenance = field(default_factory=artifacts.Provenance.empty)

    @classmethod
    def from_step(cls, step: artifacts.Step, split: str) -> EmbedResult:
        e = Embeddings.from_payload(step.payload)
        return cls(split, {part: len(e[part]) for part in PARTS}, int(e.train.embeddings.shape[1]),
                   e.images_per_second, step.cached, str(step.path), step.id, step.lineage)


def embed_key(job: Job, split: str, model_id: str) -> str:
    return artifacts.cache_key("embed", EMBED_ALGORITHM, model_id, job.manifest(split).fingerprint(),
                               job.resources.precision_identity())


@runtime.scoped
def _embed(job: Job, split: str, model: artifacts.Step, key: str, reporter: Reporter
           ) -> tuple[dict[str, Any], artifacts.Provenance]:
    import torch

    from osd.data.stream import batches, in_order
    from osd.data.tensors import normalize

    cfg, res, manifest = job.cfg, job.resources, job.manifest(split)
    res.setup()
    compute = res.scoring  # fp32 whatever the training precision: these are the scores tau and kappa meet
    net = compute.model(load_model(model.payload, cfg.classifier.arch))
    workers = job.workers
    classes, skipped, done = [str(c) for c in model.payload["classes"]], {}, {}
    parts = (*PARTS, NORMAL_PART) if manifest.part("test", "normal") else PARTS
    total = sum(len(_entries(manifest, p)) for p in parts)
    start, n_done = time.perf_counter(), 0
    with reporter.task("embedding", total) as task, torch.no_grad():
        for part in parts:
            entries = _entries(manifest, part)
            stats: dict[str, list[np.ndarray]] = {}
            logits, kept = [], []
            for idx, x, reasons in batches([e.path for e in entries], cfg.classifier.image_size,
                                           in_order(len(entries), 64), workers):
                ok = [i for i, r in enumerate(reasons) if not r]
                for i, r in zip(idx.tolist(), reasons):
                    if r:  # unreadable since it was indexed: named, left out
                        skipped[str(entries[i].path)] = r
                        warnings.warn(f"skipping {r}", OsdWarning, stacklevel=2)
                if ok:
                    with compute.autocast():
                        st, lg = net.embed_stages(normalize(compute.inputs(x[ok])))
                    for name, v in st.items():
                        stats.setdefault(name, []).append(compute.output(v).cpu().numpy())
                    logits.append(compute.output(lg).cpu().numpy())
                    kept += [int(idx[i]) for i in ok]
                task.advance(len(reasons))
                n_done += len(ok)
            stages = {n: np.concatenate(v) for n, v in stats.items()}
            done[part] = EmbeddedPart(
                stages.pop("penultimate", np.zeros((0, net.embedding_dim), np.float32)),
                np.concatenate(logits) if logits else np.zeros((0, len(classes)), np.float32),
                [entries[i].label for i in kept],
                [entries[i].rel for i in kept],  # relative to neu.root: the data may move
                stages)
    record = Embeddings(classes, done, skipped, n_done / max(time.perf_counter() - start, 1e-9), compute.precision)
    prov = artifacts.provenance(cfg, "embed", EMBED_ALGORITHM, key, TRAIN_SECTIONS,
                                {"classifier": model.id, "manifest": manifest.fingerprint()}, split=split,
                                compute=compute.identity())
    return record.payload(), prov


def embedded(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> artifacts.Step:
    """The split's embeddings artifact (train, val, known and unknown test), from its classifier artifact."""
    reporter = ensure(reporter)
    split = job.split_name(split)
    model = trained(job, split, reporter=reporter)
    key = embed_key(job, split, model.id)
    path = job.layout.embeddings_file(split)
    return artifacts.cached_step(path, key, lambda: _embed(job, split, model, key, reporter), force=force,
                                 on_wait=reporter.note)


def embed(job: Job, split: str, force: bool = False, reporter: Reporter | None = None) -> EmbedResult:
    """Embeddings and logits of train, val, known test and unknown test; trains first if needed."""
    return EmbedResult.from_step(embedded(job, split, force, reporter), split)

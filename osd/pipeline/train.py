"""Steps ``train`` and ``embed``: the split's classifier and its penultimate-layer embeddings.

The embeddings' cache key holds the id of the classifier artifact they were computed from, so
``osd train --force`` invalidates them (and everything downstream) even when the config is unchanged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts, runtime
from osd.config import Config
from osd.pipeline.data import settings_key, split_manifest, weights_identity
from osd.progress import Reporter, ensure

# Bump when the meaning of the trained model or of the stored embeddings changes.
TRAIN_ALGORITHM = "train/3"  # 3: the epoch is chosen on select images, not on threshold images
EMBED_ALGORITHM = "embed/4"  # 4: paths relative to neu.root; 3: keyed on the classifier artifact's id
TRAIN_SECTIONS = ("classifier", "splits", "neu.root", "project.seed")

PARTS = ("train", "val", "test_known", "test_unknown")


def _entries(manifest, part: str):
    if part == "test_known":
        return manifest.select("test", "known")
    if part == "test_unknown":
        return manifest.select("test", "unknown")
    return manifest.select(part, "known")


def train_key(cfg: Config, split: str) -> str:
    m = split_manifest(cfg, split)
    # training and selection images only: a change to the threshold or test images never retrains
    return artifacts.cache_key("train", TRAIN_ALGORITHM, settings_key(cfg, ("classifier", "project.seed")),
                               m.fingerprint(("train", "select")))


@dataclass
class TrainResult:
    split: str
    arch: str
    weights: str
    classes: list[str]
    best_epoch: int
    selection_accuracy: float | None  # on the select images; None when the last epoch is kept
    seconds: float
    cached: bool
    history: list[dict[str, float]] = field(default_factory=list)
    path: str = ""
    artifact_id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_model(cfg: Config, payload: dict[str, Any]):
    import torch

    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier

    model = EmbeddingClassifier(build(payload.get("arch", cfg.classifier.arch), "none"), len(payload["classes"]))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in payload["state_dict"].items()})
    return model.eval()


@runtime.scoped
def _train(cfg: Config, split: str, manifest, key: str, path: Path, force: bool, reporter: Reporter
           ) -> dict[str, Any]:
    """Train, checkpointing every epoch; a checkpoint of the same key left by a killed run is resumed."""
    import torch

    from osd.data.tensors import load_images
    from osd.models.backbones import build, check_classifier, describe_weights
    from osd.models.classifier import EmbeddingClassifier
    from osd.models.training import fit
    from osd.pipeline.data import weights_path

    check_classifier(cfg.classifier.arch, cfg.classifier.image_size)  # before any data is read
    ckpt_path = path.with_name("checkpoint.npz")
    resume = None if force else artifacts.load(ckpt_path, key)
    device = runtime.setup(cfg)
    gen = runtime.seed_everything(cfg.project.seed)
    classes = list(manifest.known)
    data = {}
    for part in ("train", "select"):
        entries = _entries(manifest, part)
        x, kept = load_images([e.path for e in entries], cfg.classifier.image_size)
        y = torch.tensor([classes.index(entries[i].label) for i in kept])
        data[part] = (x, y)
    reporter.note(f"split {split}: training {cfg.classifier.arch} ({describe_weights(cfg.classifier.weights)} "
                  f"weights) on {len(data['train'][1])} images, {len(classes)} classes, device {device}"
                  + (f"; resuming after epoch {resume['epoch']}" if resume else ""))
    model = EmbeddingClassifier(build(cfg.classifier.arch, weights_path(cfg, cfg.classifier.weights)), len(classes))
    # deterministic kernels on CPU for this run only; the caller's setting is restored afterwards
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    try:
        outcome = fit(model, *data["train"], *data["select"], cfg.classifier, device, gen, reporter,
                      checkpoint=lambda state: artifacts.save(ckpt_path, key, state), resume=resume)
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
    payload = {
        "classes": classes, "state_dict": outcome.state_dict, "best_epoch": outcome.best_epoch,
        "selection_accuracy": outcome.selection_accuracy, "n_select": len(data["select"][1]),
        "history": outcome.history, "seconds": outcome.seconds,
        "weights": describe_weights(cfg.classifier.weights), "arch": cfg.classifier.arch,
    }
    prov = artifacts.provenance(cfg, "train", TRAIN_ALGORITHM, key, TRAIN_SECTIONS,
                                {"manifest_train_select": manifest.fingerprint(("train", "select")),
                                 "weights": weights_identity(cfg, cfg.classifier.weights, cfg.classifier.arch)},
                                split=split)
    artifact_id = artifacts.save(path, key, payload, prov)
    ckpt_path.unlink(missing_ok=True)
    out = path.parent
    artifacts.write_json(out / "history.json", outcome.history)
    artifacts.write_json(out / "config.json", cfg.to_dict())
    return {"id": artifact_id, "provenance": prov, "payload": payload}


def train(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """Train (or load from cache) the classifier of ``split``; a killed run resumes from its last epoch."""
    reporter = ensure(reporter)
    split = split.lower()
    manifest = split_manifest(cfg, split)
    key = train_key(cfg, split)
    path = artifacts.Layout(cfg.output_dir).model(split)
    record = None if force else artifacts.load_record(path, key)
    cached = record is not None
    if record is None:
        with artifacts.exclusive(path, reporter.note):
            # another process may have trained it while this one waited for the lock
            record = None if force else artifacts.load_record(path, key)
            cached = record is not None
            if record is None:
                record = _train(cfg, split, manifest, key, path, force, reporter)
    payload = record["payload"]
    prov = {**record["provenance"], "artifact_id": record["id"]}
    return TrainResult(split, payload["arch"], payload["weights"], list(payload["classes"]), payload["best_epoch"],
                       payload["selection_accuracy"], payload["seconds"], cached, payload["history"], str(path),
                       record["id"], prov)


@dataclass
class EmbedResult:
    split: str
    counts: dict[str, int]
    dim: int
    images_per_second: float
    cached: bool
    path: str
    artifact_id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embed_key(cfg: Config, split: str, model_id: str) -> str:
    return artifacts.cache_key("embed", EMBED_ALGORITHM, model_id, split_manifest(cfg, split).fingerprint())


@runtime.scoped
def embed(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> EmbedResult:
    """Embeddings and logits of train, val, known test and unknown test; trains first if needed."""
    import torch

    from osd.data.tensors import load_images, normalize

    reporter = ensure(reporter)
    split = split.lower()
    trained = train(cfg, split, reporter=reporter)
    key = embed_key(cfg, split, trained.artifact_id)
    layout = artifacts.Layout(cfg.output_dir)
    path = layout.embeddings_file(split)
    record = None if force else artifacts.load_record(path, key)
    cached = record is not None
    if record is None:
        device = runtime.setup(cfg)
        tpayload = artifacts.load(layout.model(split), None)
        model = load_model(cfg, tpayload).to(device)
        manifest = split_manifest(cfg, split)
        payload = {"classes": tpayload["classes"], "skipped": {}}
        total = sum(len(_entries(manifest, p)) for p in PARTS)
        start, n_done = time.perf_counter(), 0
        with reporter.task("embedding", total) as task, torch.no_grad():
            for part in PARTS:
                entries = _entries(manifest, part)
                x, kept = load_images([e.path for e in entries], cfg.classifier.image_size, payload["skipped"])
                stats: dict[str, list[np.ndarray]] = {}
                logits = []
                for s in range(0, len(kept), 64):
                    st, lg = model.embed_stages(normalize(x[s : s + 64].to(device)))
                    for name, v in st.items():
                        stats.setdefault(name, []).append(v.cpu().numpy())
                    logits.append(lg.cpu().numpy())
                    task.advance(len(lg))
                    n_done += len(lg)
                stages = {n: np.concatenate(v) for n, v in stats.items()}
                payload[part] = {
                    "embeddings": stages.pop("penultimate", np.zeros((0, model.embedding_dim), np.float32)),
                    "stages": stages,
                    "logits": np.concatenate(logits) if logits else np.zeros((0, len(payload["classes"])), np.float32),
                    "labels": [entries[i].label for i in kept],
                    "paths": [entries[i].rel for i in kept],  # relative to neu.root: the data may move
                }
        payload["images_per_second"] = n_done / max(time.perf_counter() - start, 1e-9)
        prov = artifacts.provenance(cfg, "embed", EMBED_ALGORITHM, key, TRAIN_SECTIONS,
                                    {"classifier": trained.artifact_id,
                                     "manifest": split_manifest(cfg, split).fingerprint()}, split=split)
        record = {"id": artifacts.save(path, key, payload, prov), "provenance": prov, "payload": payload}
    payload = record["payload"]
    counts = {p: len(payload[p]["labels"]) for p in PARTS}
    return EmbedResult(split, counts, int(payload["train"]["embeddings"].shape[1]),
                       float(payload["images_per_second"]), cached, str(path), record["id"],
                       {**record["provenance"], "artifact_id": record["id"]})


def load_embeddings(cfg: Config, split: str, reporter: Reporter | None = None) -> tuple[dict[str, Any], EmbedResult]:
    """The embeddings payload (computed first if needed) and the step result that identifies it."""
    result = embed(cfg, split, reporter=reporter)
    return artifacts.load(Path(result.path), None), result

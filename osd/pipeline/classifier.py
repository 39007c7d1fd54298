"""Steps ``train`` and ``embed``: the split's classifier and its penultimate-layer embeddings."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from osd import artifacts
from osd.config import Config
from osd.pipeline.data import split_manifest
from osd.progress import Reporter, ensure

PARTS = ("train", "val", "test_known", "test_unknown")


def _entries(manifest, part: str):
    if part == "test_known":
        return manifest.select("test", "known")
    if part == "test_unknown":
        return manifest.select("test", "unknown")
    return manifest.select(part, "known")


def train_key(cfg: Config, split: str) -> str:
    m = split_manifest(cfg, split)
    return artifacts.cache_key("train", cfg.section("classifier"), cfg.project.seed, m.fingerprint())


@dataclass
class TrainResult:
    split: str
    arch: str
    weights: str
    classes: list[str]
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    cached: bool
    history: list[dict[str, float]] = field(default_factory=list)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_model(cfg: Config, payload: dict[str, Any]):
    import torch

    from osd.models.backbones import build
    from osd.models.classifier import EmbeddingClassifier

    model = EmbeddingClassifier(build(cfg.classifier.arch, "none"), len(payload["classes"]))
    model.load_state_dict({k: torch.as_tensor(v) for k, v in payload["state_dict"].items()})
    return model.eval()


def train(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> TrainResult:
    """Train (or load from cache) the classifier of ``split``."""
    import torch

    from osd import runtime
    from osd.data.tensors import load_images
    from osd.models.backbones import build, describe_weights
    from osd.models.classifier import EmbeddingClassifier
    from osd.models.training import fit

    reporter = ensure(reporter)
    split = split.lower()
    manifest = split_manifest(cfg, split)
    key = train_key(cfg, split)
    path = artifacts.Layout(cfg.output_dir).classifier(split) / "model.joblib"
    payload = None if force else artifacts.load(path, key)
    if payload is None:
        device = runtime.setup(cfg)
        gen = runtime.seed_everything(cfg.project.seed)
        torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
        classes = list(manifest.known)
        data = {}
        for part in ("train", "val"):
            entries = _entries(manifest, part)
            x, kept = load_images([e.path for e in entries], cfg.classifier.image_size)
            y = torch.tensor([classes.index(entries[i].label) for i in kept])
            data[part] = (x, y)
        reporter.note(f"split {split}: training {cfg.classifier.arch} ({describe_weights(cfg.classifier.weights)} "
                      f"weights) on {len(data['train'][1])} images, {len(classes)} classes, device {device}")
        model = EmbeddingClassifier(build(cfg.classifier.arch, cfg.classifier.weights), len(classes))
        outcome = fit(model, *data["train"], *data["val"], cfg.classifier, device, gen, reporter)
        payload = {
            "classes": classes, "state_dict": outcome.state_dict, "best_epoch": outcome.best_epoch,
            "best_val_accuracy": outcome.best_val_accuracy, "history": outcome.history, "seconds": outcome.seconds,
            "weights": describe_weights(cfg.classifier.weights), "arch": cfg.classifier.arch,
        }
        artifacts.save(path, key, payload, cfg.to_dict())
        out = path.parent
        artifacts.write_json(out / "history.json", outcome.history)
        artifacts.write_json(out / "config.json", cfg.to_dict())
        cached = False
    else:
        cached = True
    return TrainResult(split, payload["arch"], payload["weights"], payload["classes"], payload["best_epoch"],
                       payload["best_val_accuracy"], payload["seconds"], cached, payload["history"], str(path))


@dataclass
class EmbedResult:
    split: str
    counts: dict[str, int]
    dim: int
    images_per_second: float
    cached: bool
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embed_key(cfg: Config, split: str) -> str:
    # "stages": the payload holds every residual stage's pooled statistics (older entries did not)
    return artifacts.cache_key("embed", "stages", train_key(cfg, split))


def embed(cfg: Config, split: str, force: bool = False, reporter: Reporter | None = None) -> EmbedResult:
    """Embeddings and logits of train, val, known test and unknown test; trains first if needed."""
    import torch

    from osd import runtime
    from osd.data.tensors import load_images, normalize

    reporter = ensure(reporter)
    split = split.lower()
    train(cfg, split, reporter=reporter)
    key = embed_key(cfg, split)
    path = artifacts.Layout(cfg.output_dir).embeddings(split) / "embeddings.joblib"
    payload = None if force else artifacts.load(path, key)
    cached = payload is not None
    if payload is None:
        device = runtime.setup(cfg)
        tpayload = artifacts.load(artifacts.Layout(cfg.output_dir).classifier(split) / "model.joblib", None)
        model = load_model(cfg, tpayload).to(device)
        manifest = split_manifest(cfg, split)
        payload = {"classes": tpayload["classes"]}
        total = sum(len(_entries(manifest, p)) for p in PARTS)
        start, n_done = time.perf_counter(), 0
        with reporter.task("embedding", total) as task, torch.no_grad():
            for part in PARTS:
                entries = _entries(manifest, part)
                x, kept = load_images([e.path for e in entries], cfg.classifier.image_size)
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
                    "paths": [str(entries[i].path) for i in kept],
                }
        payload["images_per_second"] = n_done / max(time.perf_counter() - start, 1e-9)
        artifacts.save(path, key, payload, cfg.to_dict())
    counts = {p: len(payload[p]["labels"]) for p in PARTS}
    return EmbedResult(split, counts, int(payload["train"]["embeddings"].shape[1]),
                       float(payload["images_per_second"]), cached, str(path))


def load_embeddings(cfg: Config, split: str, reporter: Reporter | None = None) -> dict[str, Any]:
    embed(cfg, split, reporter=reporter)
    return artifacts.load(artifacts.Layout(cfg.output_dir).embeddings(split) / "embeddings.joblib", None)

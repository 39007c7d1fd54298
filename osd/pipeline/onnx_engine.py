"""ONNX Runtime sessions of an ``osd export``: what ``osd predict --engine onnx`` runs.

``onnxruntime`` is imported only when a session is opened (the ``osd[export]`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from osd import artifacts
from osd.errors import ArtifactError, ConfigError, LineageError
from osd.patchcore.stage1 import Stage1Sizes
from osd.pipeline.chain import Chain
from osd.pipeline.job import Job
from osd.types import JsonObject


def need_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise ConfigError('the ONNX export and ONNX Runtime scoring need ONNX: pip install "osd[export]"') from None
    return onnxruntime


def verify(folder: Path, rebuild: str) -> None:
    """Every file of the export against the sha256 that ``osd export`` recorded (``export.npz``): a graph
    that was changed, cut short or removed since is refused in one line, before any session is built."""
    record = artifacts.load(artifacts.Layout.export_record(folder), None)
    files = (record or {}).get("files") if isinstance(record, dict) else None
    if not files:
        raise ArtifactError(f"{artifacts.Layout.export_record(folder)}: missing or unreadable, so the graphs cannot be "
                            "verified; the export is to be made again", rebuild=rebuild)
    for name, digest in files.items():
        path = artifacts.Layout.export_file(folder, name)
        if not path.is_file():
            raise ArtifactError(f"{path}: missing from the export", rebuild=rebuild)
        if artifacts.file_sha256(path) != digest:
            raise ArtifactError(f"{path}: its content differs from what the export wrote (sha256 mismatch: changed or "
                                "cut short)", rebuild=rebuild)


def card_split(folder: Path) -> str | None:
    """The split an export folder's model card names ("-" for a detection study), or None where there is no
    readable card: for hints and refusals that must not fail on a damaged bundle themselves."""
    import json

    try:
        split = json.loads(artifacts.Layout.export_card(folder).read_text(encoding="utf-8")).get("split")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return split if isinstance(split, str) and split else None


def read_card(folder: Path, rebuild: str) -> JsonObject:
    """The export's model card; a missing one is "no ONNX export", a damaged one is named as the cause."""
    import json

    path = artifacts.Layout.export_card(folder)
    if not path.is_file():
        raise ArtifactError(f"{folder}: no ONNX export (no {path.name})", rebuild=rebuild)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path}: the model card is damaged ({type(exc).__name__}: {str(exc)[:80]}); the export "
                            "is to be made again", rebuild=rebuild) from None
    if not isinstance(card, dict):
        raise ArtifactError(f"{path}: the model card is damaged (not a JSON object); the export is to be made again",
                            rebuild=rebuild)
    return card


def _session(ort: Any, path: Path, opts: Any) -> Any:
    """An ONNX Runtime session, or one line naming the graph that cannot be loaded."""
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own (InvalidProtobuf, Fail, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ArtifactError(f"{path}: ONNX Runtime cannot load this graph ({first})", rebuild="export") from None


class OnnxModels:
    """ONNX Runtime sessions of an export, with the model card that describes them."""

    def __init__(self, folder: Path, card: JsonObject, threads: int = 0):
        ort = need_onnx()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.card = card
        self.classes = list(card.get("classes", []))  # none in a detection study's export
        graph = artifacts.Layout.export_graph
        self.one = _session(ort, graph(folder, "one_stage"), opts) if card.get("study") != "detection" else None
        self.stage1 = (_session(ort, graph(folder, "stage1"), opts)
                       if graph(folder, "stage1").is_file() and "stage1" in card else None)

    @classmethod
    def open(cls, job: Job, chain: Chain, folder: Path | None = None) -> OnnxModels:
        """The export of ``chain``'s split; refused when it was made from other artifacts than the chain holds."""
        cfg = job.cfg
        rebuild = f"export --split {chain.split}" + (f" --out {folder}" if folder is not None else "")
        folder = Path(folder or job.layout.export(chain.split))
        card = read_card(folder, rebuild)
        made_from = card.get("provenance", {}).get("inputs", {})
        for name, current in chain.ids.items():
            if name in made_from and made_from[name] != current:
                raise LineageError(f"{folder}: the export was made from another {name} ({made_from[name]}) than the "
                                   f"one cached now ({current})", rebuild=rebuild)
        if chain.detector is not None and "stage1" not in card:
            raise ArtifactError(f"{folder}: the export has no stage-1 graph", rebuild=f"{rebuild} --approach both")
        verify(folder, rebuild)
        return cls(folder, card, cfg.project.threads)

    @classmethod
    def open_stage1(cls, job: Job, detector: artifacts.Step, folder: Path | None = None) -> OnnxModels:
        """A detection study's export (stage 1 alone); refused when made from another PatchCore fit."""
        cfg = job.cfg
        rebuild = "export" + (f" --out {folder}" if folder is not None else "")
        folder = Path(folder or job.layout.detection_export)
        card = read_card(folder, rebuild)
        if "stage1" not in card:
            raise ArtifactError(f"{folder}: the export has no stage-1 graph (not a detection study's export)",
                                rebuild=rebuild)
        made = card.get("provenance", {}).get("inputs", {}).get("detector")
        if made != detector.id:
            raise LineageError(f"{folder}: the export was made from another PatchCore fit ({made}) than the one "
                               f"cached now ({detector.id})", rebuild=rebuild)
        verify(folder, rebuild)
        return cls(folder, card, cfg.project.threads)

    def one_stage(self, imgs: list[Any], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(closed-set class names, distances, max softmax) of decoded images."""
        x = _batch(imgs, size)
        idx, dist, msp = self.one.run(None, {"image": x})
        return np.array([self.classes[int(i)] for i in idx], dtype=object), dist.astype(np.float64), msp

    def stage1_scores(self, imgs: list[Any], sizes: Stage1Sizes) -> np.ndarray:
        """Stage-1 scores of decoded images, by the same unit rule as the study (crops of long images)."""
        from osd.patchcore.stage1 import image_units

        size = int(self.card["stage1"]["image_size"])
        crops, owner = [], []
        for j, img in enumerate(imgs):
            for box in image_units(img, sizes):
                crops.append(img.crop(box) if box else img)
                owner.append(j)
        scores = np.full(len(imgs), -np.inf)
        bs = sizes.batch_size
        for s in range(0, len(crops), bs):
            (part,) = self.stage1.run(None, {"image": _batch(crops[s : s + bs], size)})
            np.maximum.at(scores, np.asarray(owner[s : s + bs]), part.astype(np.float64))
        return scores


def _batch(imgs: list[Any], size: int) -> np.ndarray:
    """Decoded PIL images -> float32 (N, 3, size, size) in [0, 1], resized as the study resizes them."""
    from osd.data.tensors import pil_to_uint8

    return np.stack([pil_to_uint8(i, size).numpy() for i in imgs]).astype(np.float32) / 255.0



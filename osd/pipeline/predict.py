"""``osd predict``: the study's fitted models on new images. It never trains or fits.

The models are the split's cached artifacts (classifier, calibration, PatchCore), rebuilt with
the settings recorded in their own provenance (image sizes, backbones, layers, seed), so a later
edit of ``osd.toml`` cannot silently change how they are applied; a difference is reported.
Images stream through in batches (memory bounded whatever the number of inputs); an unreadable
file gives a row with its reason and the run goes on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osd import decide, runtime
from osd.config import Config
from osd.data.images import is_image_name
from osd.errors import DataError, OsdWarning
from osd.pipeline.chain import load_chain
from osd.pipeline.job import Job
from osd.types import JsonObject, Settings

APPROACHES = ("one-stage", "cascade", "both")
ENGINES = ("torch", "onnx")
COLUMNS = ("path", "status", "reason", "one_stage", "one_stage_score", "tau", "closed_class", "msp", "kappa",
           "cascade", "stage1_score", "stage1_threshold")


def expand_inputs(items: Sequence[str | Path]) -> Iterator[Path]:
    """Image files, folders (recursive, in name order) and text files listing paths (one per line)."""
    for item in items:
        p = Path(item)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and is_image_name(f))
        elif p.suffix.lower() in (".txt", ".lst") and p.is_file():
            for line in _list_lines(p):
                if line.strip() and not line.lstrip().startswith("#"):
                    q = Path(line.strip())
                    yield q if q.is_absolute() else p.parent / q
        else:
            yield p


def _list_lines(path: Path) -> list[str]:
    """The lines of a list of paths: UTF-8 (a byte-order mark allowed), else Latin-1 with a warning (a list
    written on Windows); a binary file is refused in one line."""
    import warnings

    raw = path.read_bytes()
    if b"\x00" in raw:
        raise DataError(f"{path}: a binary file, not a list of image paths (one per line)")
    try:
        return raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        warnings.warn(f"{path}: not UTF-8; read as Latin-1 (a list written on Windows?)", OsdWarning, stacklevel=3)
        return raw.decode("latin-1").splitlines()


SCORES = {"one_stage_score": "one-stage distance", "msp": "max softmax", "stage1_score": "stage-1 score"}
DECISIONS = ("one_stage", "cascade", "closed_class", "decision")
DETECTION_COLUMNS = ("path", "status", "reason", "decision", "stage1_score", "stage1_threshold")


def invalid_scores(row: JsonObject) -> JsonObject:
    """A row whose score is NaN or infinite gets no decision: status ``invalid_score``, the reason,
    and ``None`` for the scores (so ``--json`` stays valid JSON). A decision is never made from a
    number that is not one."""
    bad = [k for k in SCORES if isinstance(row.get(k), float) and not np.isfinite(row[k])]
    if not bad:
        return row
    out = {k: (None if k in bad or k in DECISIONS else v) for k, v in row.items()}
    out.update(status="invalid_score", reason=", ".join(f"{SCORES[k]} is {row[k]}" for k in bad)
               + ": no decision (a corrupted model or export?)")
    return out


@dataclass
class Predictor:
    """The split's fitted models, loaded once; ``predict`` turns images into decision rows."""

    job: Job
    split: str
    approach: str = "both"
    device: Any = None
    notes: list[str] = field(default_factory=list)
    engine: str = "torch"  # torch | onnx (the graphs of `osd export`)
    export_dir: Path | None = None  # where `osd export` wrote them (default outputs/split_<x>/export)
    onnx_card: JsonObject | None = None  # export's own parity check: the card it has just made

    @property
    def cfg(self) -> Config:
        return self.job.cfg

    @runtime.scoped  # building the models draws on torch's global generator: the caller's comes back
    def __post_init__(self) -> None:
        from osd.pipeline.train import load_model

        if self.approach not in APPROACHES:
            raise DataError(f"--approach {self.approach!r}: choose one of {', '.join(APPROACHES)}")
        if self.engine not in ENGINES:
            raise DataError(f"--engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        # threads are set per batch, inside runtime.scope (see _rows): none are set here
        self.device = self.device or self.job.resources.device
        self.detect_only = self.cfg.project.study == "detection"
        if self.detect_only:
            self._load_detection()
            return
        self.split = self.cfg.split_name(self.split)
        chain = load_chain(self.job, self.split, self.approach in ("cascade", "both"))
        self.chain, self.provenance = chain, chain.ids
        recorded = chain.recorded("classifier")
        self.classifier_size = int(recorded.get("classifier.image_size", self.cfg.classifier.image_size))
        self._check_settings(recorded, "classifier")
        self.classes = chain.classes
        self.scorer, self.blocks = chain.calibration.payload["scorer"], list(chain.calibration.payload["blocks"])
        self.tau, self.kappa = chain.tau, chain.kappa
        self.use_kappa = self.cfg.cascade.use_kappa
        self.detector = None
        if chain.detector is not None:
            self._stage1_as_fitted(chain.recorded("detector"), chain.detector.payload)
        if self.engine == "onnx":
            from osd.pipeline.onnx_engine import OnnxModels

            self.onnx = (OnnxModels(Path(self.export_dir), self.onnx_card, self.cfg.project.threads) if self.onnx_card
                         else OnnxModels.open(self.job, chain, self.export_dir))
            self.detector = self.onnx.stage1 if chain.detector is not None else None
            return
        self.compute = self._compute("classifier")
        self.model = self.compute.model(load_model(chain.classifier.payload, self.cfg.classifier.arch)).eval()
        if chain.detector is not None:
            self._stage1_models(chain.detector.payload)

    def _compute(self, network: str):
        # fp32 whatever the training precision: the scores the study set tau, kappa and stage 1's threshold on
        return self.job.resources.compute(network)

    def _load_detection(self) -> None:
        """A detection project: the PatchCore fit alone, applied as it was made."""
        from osd import artifacts

        det = artifacts.require(self.job.layout.detector, "run-all", "PatchCore detector")
        self.chain, self.provenance, self.split = None, {"detector": det.id}, "-"
        self._stage1_as_fitted(dict(det.provenance.config), det.payload)
        if self.engine == "onnx":
            from osd.pipeline.onnx_engine import OnnxModels

            self.onnx = (OnnxModels(Path(self.export_dir), self.onnx_card, self.cfg.project.threads) if self.onnx_card
                         else OnnxModels.open_stage1(self.job, det, self.export_dir))
            self.detector = self.onnx.stage1
            return
        self._stage1_models(det.payload)

    def _stage1_models(self, payload: dict[str, Any]) -> None:
        """The fitted detector and its extractor, rebuilt by the spec the fit recorded."""
        from osd.pipeline.detector import build_extractor

        self.detector = self.stage1_spec.detector(payload).to(self.device)
        self.extractor = build_extractor(self.stage1_spec, self.device, self._compute("patchcore").dtype).eval()

    def _detection_rows(self, names: list[str], imgs: list[Any]) -> list[JsonObject]:
        from osd.patchcore.stage1 import score_pil

        s1 = (self.onnx.stage1_scores(imgs, self.stage1_sizes) if self.engine == "onnx"
              else score_pil(self.detector, self.extractor, imgs, self.stage1_sizes, self.device))
        return [invalid_scores({"path": name, "status": "ok", "reason": "",
                                "decision": decide.DEFECT if s1[j] > self.stage1_threshold else decide.NO_DEFECT,
                                "stage1_score": float(s1[j]), "stage1_threshold": self.stage1_threshold})
                for j, name in enumerate(names)]

    def _stage1_as_fitted(self, recorded: Settings, payload: dict[str, Any]) -> None:
        """Stage 1 with the settings its fit recorded (a later osd.toml edit does not change how it
        cuts or sizes an image): the sizes it scores by, the settings that rebuild its extractor."""
        from osd.patchcore.stage1 import SETTINGS, Stage1Sizes
        from osd.pipeline.detector import stage1_spec

        self._check_settings(recorded, "patchcore")
        self.stage1_sizes = Stage1Sizes.from_settings({**self.cfg.flat(SETTINGS), **recorded})
        self.stage1_spec = stage1_spec(self.job, recorded)
        self.stage1_threshold = float(payload["threshold"].threshold_)

    def _check_settings(self, recorded: Settings, section: str) -> None:
        diffs = [d for d in self.cfg.differences({k: v for k, v in recorded.items() if k.startswith(section + ".")})]
        if diffs:
            msg = (f"the cached {section} was made with other settings than osd.toml has now "
                   f"({'; '.join(diffs[:3])}); it is applied as it was made")
            self.notes.append(msg)
            warnings.warn(msg, OsdWarning, stacklevel=3)

    def _rows(self, names: list[str], imgs: list[Any]) -> list[JsonObject]:
        with runtime.scope():  # project.threads for this batch; the caller's count comes back after it
            runtime.use_threads(self.cfg.project.threads)  # per batch: nothing else is resolved again
            return self._batch_rows(names, imgs)

    def _batch_rows(self, names: list[str], imgs: list[Any]) -> list[JsonObject]:
        import torch

        from osd.data.tensors import normalize, pil_to_uint8
        from osd.osr.features import stack
        from osd.patchcore.stage1 import score_pil

        if self.detect_only:
            return self._detection_rows(names, imgs)
        if self.engine == "onnx":
            closed, dist, msp = self.onnx.one_stage(imgs, self.classifier_size)
        else:
            c = self.compute
            with torch.inference_mode(), c.autocast():
                x = normalize(c.inputs(torch.stack([pil_to_uint8(i, self.classifier_size) for i in imgs])))
                stats, logits = self.model.embed_stages(x)
            feats = stack({k: c.output(v).cpu().numpy() for k, v in stats.items()}, self.blocks)[0]
            dist = self.scorer.score_samples(feats)
            closed, msp = decide.closed_set(c.output(logits).cpu().numpy(), self.classes)
        kappa = self.kappa if self.use_kappa else None
        one = decide.one_stage(dist, self.tau, closed)
        s1 = casc = None
        if self.detector is not None:
            s1 = (self.onnx.stage1_scores(imgs, self.stage1_sizes) if self.engine == "onnx"
                  else score_pil(self.detector, self.extractor, imgs, self.stage1_sizes, self.device))
            casc = decide.cascade(s1, self.stage1_threshold, closed, msp, kappa)["strict"]
        rows = []
        for j, name in enumerate(names):
            row: JsonObject = {"path": name, "status": "ok", "reason": "", "closed_class": str(closed[j]),
                                   "msp": float(msp[j]), "kappa": kappa}
            if self.approach in ("one-stage", "both"):
                row.update(one_stage=str(one[j]), one_stage_score=float(dist[j]), tau=self.tau)
            if s1 is not None:
                row.update(cascade=str(casc[j]), stage1_score=float(s1[j]), stage1_threshold=self.stage1_threshold)
            rows.append(invalid_scores(row))
        return rows

    def predict(self, images: Iterable[Any], batch_size: int = 16) -> Iterator[JsonObject]:
        """One row per input, in order: paths (str / Path), PIL images or HxW[x3] uint8 arrays."""
        from PIL import Image

        from osd.data.images import load_rgb, to_rgb

        names: list[str] = []
        batch: list[Any] = []
        for k, item in enumerate(images):
            name = str(item) if isinstance(item, (str, Path)) else f"<image {k}>"
            try:
                if isinstance(item, (str, Path)):
                    img = load_rgb(item)
                elif isinstance(item, Image.Image):
                    img = to_rgb(item)
                else:
                    img = to_rgb(Image.fromarray(array_image(item)))
            except (DataError, TypeError, ValueError) as exc:
                if batch:
                    yield from self._rows(names, batch)
                    names, batch = [], []
                reason = str(exc).replace(name + ": ", "")
                yield {"path": name, "status": "unreadable", "reason": reason}
                continue
            names.append(name)
            batch.append(img)
            if len(batch) == batch_size:
                yield from self._rows(names, batch)
                names, batch = [], []
        if batch:
            yield from self._rows(names, batch)


def array_image(item: Any) -> np.ndarray:
    """An input that is not a path or a PIL image, as the pixels of one image: H x W or H x W x 1/3/4, uint8
    (what a camera SDK or ``np.asarray(PIL image)`` gives). Anything else is refused with the reason: a 1-D
    array (a file's bytes read with ``np.frombuffer`` would otherwise be decoded as a row of pixels and get a
    decision), bytes, a number, a batch of images, floats or non-finite values."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        raise DataError("bytes are not an image: give the file's path, or PIL.Image.open(io.BytesIO(data))")
    a = np.asarray(item)
    if a.dtype == object or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)) or min(a.shape[:2]) < 2:
        raise DataError(f"an array of shape {a.shape} is not an image: give H x W or H x W x 3 uint8 pixels (a "
                        "batch: one array per image; a file's bytes: its path)")
    if a.dtype != np.uint8:
        raise DataError(f"an array of dtype {a.dtype} is not an image's pixels: give uint8 (0-255), as "
                        "np.asarray(PIL.Image.open(path)) gives")
    return a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a


def predict(job: Job, split: str, inputs: Iterable[Any], approach: str = "both", batch_size: int = 16,
            engine: str = "torch") -> list[JsonObject]:
    """Rows for every input (paths, PIL images or arrays) with the split's cached models: for notebooks."""
    return list(Predictor(job, split, approach, engine=engine).predict(inputs, batch_size))

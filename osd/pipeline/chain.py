"""The fitted models of a split as one chain, loaded for use outside the study (``predict``, ``export``).

Each link is checked against the artifact ids the next one recorded (classifier -> embeddings ->
calibration; the PatchCore detector stands alone), so models that do not belong together are
refused in one line naming the command that rebuilds them. Nothing is trained or fitted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from osd import artifacts
from osd.pipeline.job import Job
from osd.types import Settings


@dataclass
class Chain:
    split: str
    classifier: artifacts.Step
    embeddings: artifacts.Step  # its record only: id and provenance
    calibration: artifacts.Step
    detector: artifacts.Step | None = None

    @property
    def ids(self) -> dict[str, str]:
        out = {"classifier": self.classifier.id, "embeddings": self.embeddings.id, "calibration": self.calibration.id}
        if self.detector is not None:
            out["detector"] = self.detector.id
        return out

    @property
    def tau(self) -> float:
        return float(self.calibration.payload["tau"].threshold_)

    @property
    def kappa(self) -> float:
        return float(-self.calibration.payload["neg_kappa"].threshold_)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.classifier.payload["classes"]]

    def recorded(self, part: str) -> Settings:
        """The settings a model was made with (``classifier`` or ``detector``), from its provenance."""
        step = self.classifier if part == "classifier" else self.detector
        return dict(step.provenance.config) if step is not None else {}


def load_chain(job: Job, split: str, detector: bool) -> Chain:
    """The split's classifier, embeddings record and calibration (and the detector), link by link."""
    cfg = job.cfg
    s = cfg.split_name(split)
    layout = job.layout
    model = artifacts.require(layout.model(s), f"train --split {s}", f"classifier of split {s}")
    emb = artifacts.require(layout.embeddings_file(s), f"calibrate --split {s}", f"embeddings of split {s}",
                            {"classifier": model.id}, payload=False)
    cal = artifacts.require(layout.calibration(s), f"calibrate --split {s}", f"calibration of split {s}",
                            {"embeddings": emb.id})
    det = artifacts.require(layout.detector, "patchcore fit", "PatchCore detector") if detector else None
    return Chain(s, model, emb, cal, det)

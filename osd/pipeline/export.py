"""``osd export``: the split's fitted models as ONNX graphs with a model card, checked against torch.

- ``one_stage.onnx``: image -> (class index, squared Mahalanobis distance, max softmax); tau and
  kappa are in the model card. It serves the one-stage decision and the cascade's stage 2.
- ``stage1.onnx``: image (one square crop) -> PatchCore score; its threshold is in the model card.
- ``model_card.json``: classes, input layout and normalisation, image sizes, thresholds with their
  acceptance targets, the decision rules, the score signs and the provenance ids of every artifact
  exported: enough to use the graphs without osd.

Export goes through the one cached-step mechanism (its record ``export.npz``, keyed on the
artifact ids it exports), refuses a broken lineage as ``predict`` does, and checks parity on the
split's test images before it succeeds: ONNX Runtime's distances and stage-1 scores within a
relative 1e-4 of torch's, and every decision identical. ``onnx`` and ``onnxruntime`` are the
``osd[export]`` extra, imported only here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from osd import artifacts
from osd.errors import ArtifactError, ConfigError
from osd.pipeline.chain import Chain, load_chain
from osd.pipeline.job import Job
from osd.pipeline.onnx_engine import card_split, need_onnx
from osd.progress import Reporter, ensure
from osd.records import Record
from osd.types import JsonObject

# 4: the monitor reference; 3: every engine scores in fp32;
EXPORT_ALGORITHM = "export/4"  # 2: the card says the graphs' precision and the thresholds'
TOLERANCE = 1e-4  # relative, on distances and stage-1 scores


@dataclass(frozen=True)
class ExportResult(Record):
    """The export step's record: the bundle's files, its parity check and its model card."""

    split: str
    out_dir: str
    files: list[str]
    parity: JsonObject
    cached: bool
    card: JsonObject = field(default_factory=dict)


def _export_graph(module, size: int, path: Path, outputs: list[str]) -> None:
    import torch

    def write(tmp: Path) -> None:
        import warnings

        # the tracer warns that Python values computed from tensors are frozen into the graph; that is
        # what the export's parity check on the split's test images tests, so the warning (shown cut
        # mid-sentence before) is silenced here and the parity check speaks instead
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(module, (torch.rand(2, 3, size, size),), str(tmp), input_names=["image"],
                              output_names=outputs, dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"}
                                                                                          for o in outputs}},
                              opset_version=17, dynamo=False)

    artifacts.atomic_write(path, write)


def _refusals(job: Job, chain: Chain | None, detector: artifacts.Step | None) -> None:
    """Everything an export refuses that can be known before a file is written: checked first, so a
    refused export leaves no graph (and no lock file) behind."""
    from osd.pipeline.detector import stage1_spec

    if chain is not None:
        blocks = list(chain.calibration.payload["blocks"])
        if blocks != ["penultimate"]:
            raise ConfigError(f"the ONNX export: the calibration scores {blocks}; only the locked method (penultimate "
                              "Mahalanobis) is exported; set osr.features = 'penultimate' and run osd calibrate")
    if detector is None:
        return
    det = detector.payload
    if stage1_spec(job, dict(detector.provenance.config)).num_neighbors > 1:
        raise ConfigError("the ONNX export: patchcore.num_neighbors > 1 (the re-weighted score) is not exported")
    if det.get("ivf_centroids") is not None:  # the graph searches exactly: its scores would differ
        raise ConfigError(f"the ONNX export: the stage-1 bank ({int(det['bank'].shape[0]):,} rows) is searched by the "
                          "approximate inverted file, which the ONNX graph (an exact search) cannot reproduce; "
                          "refit stage 1 with an exact search first (osd patchcore fit --set patchcore.search=torch "
                          "--force), then export with the same --set patchcore.search=torch")


def _staged(out: Path, build: Callable[[Path], JsonObject]) -> JsonObject:
    """``build`` the export in a temporary folder beside ``out``; its files replace ``out``'s only once
    it is whole (graphs written, parity passed, card sealed). A refused or failed export leaves ``out``
    as it was."""
    import os
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        payload = build(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for f in artifacts.Layout.export_files(out):  # a graph the new export does not have goes
            if f.name not in payload["files"]:
                f.unlink(missing_ok=True)
        for name in payload["files"]:
            os.replace(tmp / name, artifacts.Layout.export_file(out, name))
        return payload
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _graphs(job: Job, chain: Chain, out: Path, approach: str) -> JsonObject:
    """Write the graphs; return the model card (less its parity and provenance)."""
    import torch

    from osd.models.graphs import OneStageGraph
    from osd.pipeline.train import load_model

    cfg = job.cfg
    cal = chain.calibration.payload
    scorer = cal["scorer"].scorers_[0]
    size = int(chain.recorded("classifier").get("classifier.image_size", cfg.classifier.image_size))
    with torch.random.fork_rng(devices=[]):
        model = load_model(chain.classifier.payload, cfg.classifier.arch).eval()
    graph = OneStageGraph(model, torch.as_tensor(scorer.means_), torch.as_tensor(scorer.precision_),
                          scorer.normalize == "l2").eval()
    _export_graph(graph, size, artifacts.Layout.export_graph(out, "one_stage"), ["class_index", "distance", "max_softmax"])
    card: JsonObject = {
        "format": "osd-onnx/1", "split": chain.split, "classes": chain.classes,
        "precision": _precision_note(job),
        "input": {"name": "image", "layout": "NCHW float32, RGB in [0, 1]: the decoded image resized (bilinear) to "
                                             "a square of image_size, divided by 255; the graphs normalise it "
                                             "(ImageNet mean and std) themselves",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "one_stage": {"file": artifacts.Layout.export_graph(out, "one_stage").name, "image_size": size,
                      "outputs": {"class_index": "arg-max class (index into classes)",
                                  "distance": "smallest squared Mahalanobis distance to a class mean (float64)",
                                  "max_softmax": "max softmax of the classifier (float64)"},
                      "tau": chain.tau, "tau_acceptance": cal["tau"].acceptance,
                      "kappa": chain.kappa, "kappa_acceptance": cal["neg_kappa"].acceptance,
                      "rule": "unknown when distance > tau, else classes[class_index]",
                      "score_sign": "higher distance = more unknown"},
        "cascade": {"stage2_rule": "unknown when max_softmax < kappa (when cascade.use_kappa), else "
                                   "classes[class_index]", "use_kappa": cfg.cascade.use_kappa,
                    "rule": "no_defect when the stage-1 score <= its threshold, else stage 2's answer"},
    }
    if approach in ("cascade", "both"):
        card["stage1"] = _stage1_graph(job, chain.detector, out)
    return card


def _precision_note(job: Job) -> dict[str, str]:
    """The graphs compute in fp32, as the study and ``predict`` score (whatever the training precision)."""

    res = job.resources
    return {"graphs": "fp32", "classifier_trained_in": res.classifier.precision,
            "classifier_thresholds_set_at": res.scoring.precision, "stage1_threshold_set_at": res.patchcore.precision,
            "note": "every score compared with a threshold is computed in fp32 by the study, predict and these "
                    "graphs alike: the engines agree to float tolerance"}


def _stage1_graph(job: Job, detector: artifacts.Step, out: Path) -> JsonObject:
    """``stage1.onnx`` of a PatchCore fit, and its part of the model card."""
    import torch

    from osd.models.graphs import Stage1Graph
    from osd.pipeline.detector import build_extractor, stage1_spec

    det = detector.payload
    recorded = dict(detector.provenance.config)
    spec = stage1_spec(job, recorded)
    s1 = Stage1Graph(build_extractor(spec, torch.device("cpu"), None),  # fp32: the graphs' precision
                     torch.as_tensor(det["bank"])).eval()
    _export_graph(s1, spec.image_size, artifacts.Layout.export_graph(out, "stage1"), ["score"])
    return {"file": artifacts.Layout.export_graph(out, "stage1").name, "image_size": spec.image_size,
            "threshold": float(det["threshold"].threshold_),
            "threshold_acceptance": det["threshold"].acceptance,
            "unit": "one square crop; an image whose long side is over 1.5x its short side is cut into "
                    f"{recorded.get('normal.crop_size')}-px crops (stride {recorded.get('normal.crop_stride')}) and "
                    "scored by the largest crop score",
            "bank_patches": int(det["bank"].shape[0]),
            "score_sign": "higher = more anomalous (nearest-neighbour patch distance)"}


def _parity(job: Job, chain: Chain, out: Path, card: JsonObject, approach: str) -> JsonObject:
    """torch and ONNX Runtime on the split's test images: scores within TOLERANCE, decisions identical."""
    from osd.pipeline.predict import Predictor

    paths = [e.path for e in job.manifest(chain.split).test()]
    # torch scores in fp32 (Compute.scoring), the graphs' precision, whatever the training precision
    torch_rows = list(Predictor(job, chain.split, approach).predict(paths))
    onnx_pred = Predictor(job, chain.split, approach, engine="onnx", export_dir=out, onnx_card=card)
    onnx_rows = list(onnx_pred.predict(paths))
    worst: dict[str, float] = {}
    differ = []
    for a, b in zip(torch_rows, onnx_rows):
        if a["status"] != "ok":
            continue
        for score in ("one_stage_score", "stage1_score"):
            if score in a:
                rel = abs(a[score] - b[score]) / max(abs(a[score]), 1e-12)
                worst[score] = max(worst.get(score, 0.0), rel)
        for decision in ("one_stage", "cascade"):
            if decision in a and a[decision] != b[decision]:
                differ.append(f"{a['path']}: {decision} {a[decision]} (torch) vs {b[decision]} (onnx)")
    return {"images": sum(r["status"] == "ok" for r in torch_rows), "max_relative_difference": worst,
            "tolerance": TOLERANCE, "decisions_differing": differ[:5], "n_decisions_differing": len(differ),
            "ok": not differ and all(v <= TOLERANCE for v in worst.values())}


def export(job: Job, split: str, approach: str = "both", out: Path | None = None, force: bool = False,
           reporter: Reporter | None = None) -> ExportResult:
    """The split's models as ONNX graphs with a model card; refused unless torch and ONNX agree."""
    import onnx
    import onnxruntime

    cfg = job.cfg
    need_onnx()
    reporter = ensure(reporter)
    if cfg.project.study == "detection":
        return _export_detection(job, out, force, reporter)
    if approach not in ("one-stage", "cascade", "both"):
        raise ConfigError(f"--approach {approach!r}: choose one of one-stage, cascade, both")
    chain = load_chain(job, split, approach in ("cascade", "both"))
    out = Path(out or job.layout.export(chain.split))
    key = artifacts.cache_key("export", EXPORT_ALGORITHM, chain.ids, approach, cfg.cascade.use_kappa,
                              onnx.__version__, onnxruntime.__version__, str(out))

    prov = artifacts.provenance(cfg, "export", EXPORT_ALGORITHM, key, ("classifier", "osr", "patchcore", "cascade"),
                                chain.ids, split=chain.split, onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)

    def build(tmp: Path) -> JsonObject:
        t = time.perf_counter()
        reporter.note(f"exporting split {chain.split} ({approach}) to {out}")
        card = {**_graphs(job, chain, tmp, approach), "provenance": prov.document()}
        _monitor_reference(job, chain.split, tmp, card)
        parity = _parity(job, chain, tmp, card, approach)
        return _seal(tmp, card, parity, t, f"the test images of split {chain.split}")

    _refusals(job, chain, chain.detector if approach in ("cascade", "both") else None)
    _refuse_other_split(out, chain.split)
    step = _cached_export(out, key, lambda: (_staged(out, build), prov), force, reporter)
    card = step.payload["card"]
    return ExportResult(chain.split, str(out), sorted(step.payload["files"]), card["parity"], step.cached, card)


def _refuse_other_split(out: Path, split: str) -> None:
    """An export folder that holds another split's bundle is not overwritten by this one (a line's inspection
    PC would silently score with other classes): one line naming both."""
    held = card_split(out)  # None: no card, or a damaged one (the export is made again, as its own check says)
    if held and held != split:
        raise ConfigError(f"--out {out}: it holds split {held}'s export; exporting split {split} there would replace it "
                          f"(choose another --out, or remove {out} first)")


def _monitor_reference(job: Job, split: str, folder: Path, card: JsonObject) -> None:
    """What ``osd monitor`` compares production with, into the bundle (sealed with the graphs)."""
    from osd.pipeline.monitor import project_reference, write_reference

    path = write_reference(project_reference(job, split), artifacts.Layout.export_reference(folder))
    card["monitor_reference"] = {"file": path.name, "holds": "stage-1 scores of the held-out normal images (image "
                                 "unit only), one-stage distances of the known validation images, tau and its "
                                 "acceptance, the study's class mix", "used_by": "osd monitor --export-dir"}


def _seal(out: Path, card: JsonObject, parity: JsonObject, started: float, images: str) -> JsonObject:
    """Refuse the export unless the parity check passed; else write the model card and return the
    payload: the card and every written file's sha256."""
    if not parity["ok"]:
        worst = ", ".join(f"{k} {v:.2g}" for k, v in parity["max_relative_difference"].items())
        raise ArtifactError(f"the ONNX export: ONNX Runtime disagrees with torch on {images} (largest relative "
                            f"difference {worst}, tolerance {TOLERANCE}; {parity['n_decisions_differing']} "
                            "decision(s) differ); nothing was exported")
    card["parity"] = parity
    card["seconds"] = time.perf_counter() - started
    artifacts.write_text(artifacts.Layout.export_card(out), json.dumps(artifacts.plain(card), indent=2) + "\n")
    files = {f.name: artifacts.file_sha256(f) for f in artifacts.Layout.export_files(out) if f.is_file()}
    return {"card": card, "files": files}


def _cached_export(out: Path, key: str, compute, force: bool, reporter: Reporter) -> artifacts.Step:
    """The export step; made again when a graph was changed or removed after it was written."""
    step = artifacts.cached_step(artifacts.Layout.export_record(out), key, compute, force=force, on_wait=reporter.note)
    stale = [f for f, digest in step.payload["files"].items() for path in (artifacts.Layout.export_file(out, f),)
             if not path.is_file() or artifacts.file_sha256(path) != digest]
    if stale:
        step = artifacts.cached_step(artifacts.Layout.export_record(out), key, compute, force=True, on_wait=reporter.note)
    return step


def _detection_parity(job: Job, detector: artifacts.Step, out: Path, card: JsonObject) -> JsonObject:
    """torch and ONNX Runtime on (up to 64 of) the detection study's test images."""
    from osd.pipeline.detection import defect_images
    from osd.pipeline.predict import Predictor

    paths = [*map(Path, detector.payload["test"]), *defect_images(job)[0]][:64]
    a = list(Predictor(job, "-").predict(paths))
    b = list(Predictor(job, "-", engine="onnx", export_dir=out, onnx_card=card).predict(paths))
    ok = [(x, y) for x, y in zip(a, b) if x["status"] == "ok"]
    worst = max((abs(x["stage1_score"] - y["stage1_score"]) / max(abs(x["stage1_score"]), 1e-12) for x, y in ok),
                default=0.0)
    differ = [f"{x['path']}: {x['decision']} (torch) vs {y['decision']} (onnx)" for x, y in ok
              if x["decision"] != y["decision"]]
    return {"images": len(ok), "max_relative_difference": {"stage1_score": worst}, "tolerance": TOLERANCE,
            "decisions_differing": differ[:5], "n_decisions_differing": len(differ),
            "ok": not differ and worst <= TOLERANCE}


def _export_detection(job: Job, out: Path | None, force: bool, reporter: Reporter) -> ExportResult:
    """A detection project's export: ``stage1.onnx`` and its model card (no classifier)."""
    import onnx
    import onnxruntime

    cfg = job.cfg
    layout = job.layout
    det = artifacts.require(layout.detector, "run-all", "PatchCore detector")
    out = Path(out or layout.detection_export)
    key = artifacts.cache_key("export", EXPORT_ALGORITHM, {"detector": det.id}, "detection", onnx.__version__,
                              onnxruntime.__version__, str(out))

    prov = artifacts.provenance(cfg, "export", EXPORT_ALGORITHM, key, ("patchcore",), {"detector": det.id})

    def build(tmp: Path) -> JsonObject:
        t = time.perf_counter()
        reporter.note(f"exporting the detection study's stage 1 to {out}")
        card: JsonObject = {"study": "detection", "stage1": _stage1_graph(job, det, tmp),
                                "precision": _precision_note(job),
                                "input": {"name": "image", "layout": "NCHW float32 RGB in [0, 1]",
                                          "normalisation": "inside the graph (ImageNet mean and std)"},
                                "rule": "defect when the stage-1 score > its threshold, else no_defect",
                                "provenance": prov.document()}
        _monitor_reference(job, "-", tmp, card)
        parity = _detection_parity(job, det, tmp, card)
        return _seal(tmp, card, parity, t, "the detection study's test images")

    _refusals(job, None, det)
    step = _cached_export(out, key, lambda: (_staged(out, build), prov), force, reporter)
    card = step.payload["card"]
    return ExportResult("-", str(out), sorted(step.payload["files"]), card["parity"], step.cached, card)


def model_card(folder: Path) -> JsonObject:
    return json.loads(artifacts.Layout.export_card(folder).read_text(encoding="utf-8"))


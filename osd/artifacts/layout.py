"""Where every file of the study lives: no path string is built outside this class."""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------- layout


class Layout:
    """Where every output lives, in the layout users of the original study know."""

    def __init__(self, output_dir: Path):
        self.root = Path(output_dir)

    def split(self, name: str) -> Path:
        return self.root / f"split_{name}"

    @property
    def shared(self) -> Path:
        """Artifacts every split and seed share (the frozen prefix's outputs): the project seed's output
        folder, also for another seed's run, which lives in its ``seed_<n>`` subfolder."""
        import re

        return self.root.parent if re.fullmatch(r"seed_\d+", self.root.name) else self.root

    def validation(self, name: str) -> Path:
        """The split's validation signals (``osd validate``)."""
        return self.split(name) / "validation" / "validation.npz"

    def prefix_features(self, key: str) -> Path:
        return self.shared / "shared" / f"prefix-{key[:16]}.npz"

    def manifest(self, name: str) -> Path:
        return self.split(name) / "split_manifest.csv"

    def classifier(self, name: str) -> Path:
        return self.split(name) / "classifier"

    def model(self, name: str) -> Path:
        return self.classifier(name) / "model.npz"

    def checkpoint(self, name: str) -> Path:
        """The training's last epoch, so an interrupted run resumes (removed when training ends)."""
        return self.classifier(name) / "checkpoint.npz"

    def embeddings(self, name: str) -> Path:
        return self.split(name) / "embeddings"

    def embeddings_file(self, name: str) -> Path:
        return self.embeddings(name) / "embeddings.npz"

    def osr(self, name: str) -> Path:
        return self.split(name) / "osr"

    def calibration(self, name: str) -> Path:
        return self.osr(name) / "calibration.npz"

    def thresholds(self, name: str) -> Path:
        """tau and kappa in words (readable; the calibration artifact is what steps read)."""
        return self.osr(name) / "thresholds.json"

    def osr_evaluation(self, name: str) -> Path:
        """The osr step's record (:class:`osd.records.OsrResult`)."""
        return self.osr(name) / "evaluation.npz"

    def osr_predictions(self, name: str) -> Path:
        return self.osr(name) / "predictions.csv"

    def odin(self, name: str) -> Path:
        return self.osr(name) / "odin.npz"

    def history(self, name: str) -> Path:
        """The classifier's per-epoch losses and accuracies (readable)."""
        return self.classifier(name) / "history.json"

    def classifier_config(self, name: str) -> Path:
        return self.classifier(name) / "config.json"

    def export(self, name: str) -> Path:
        """Where ``osd export`` writes a split's ONNX bundle by default."""
        return self.split(name) / "export"

    @staticmethod
    def export_record(folder: Path) -> Path:
        """The bundle's record (model card, sha256 of each graph) inside an export folder."""
        return Path(folder) / "export.npz"

    @staticmethod
    def export_graph(folder: Path, which: str) -> Path:
        """``one_stage`` / ``stage1`` / ``stage2`` graph of an export folder."""
        return Path(folder) / f"{which}.onnx"

    @staticmethod
    def export_card(folder: Path) -> Path:
        """The bundle's model card (readable JSON: thresholds, sizes, precision, parity) in an export folder."""
        return Path(folder) / "model_card.json"

    @staticmethod
    def export_file(folder: Path, name: str) -> Path:
        """A file an export record names (by its name in the bundle)."""
        return Path(folder) / name

    @staticmethod
    def export_reference(folder: Path) -> Path:
        """What ``osd monitor`` compares production with (plain arrays), in an export folder."""
        return Path(folder) / "monitor_reference.npz"

    @staticmethod
    def export_files(folder: Path) -> list[Path]:
        """Every file of an export bundle that its record seals (graphs, card, monitor reference), present or not."""
        return [Layout.export_graph(folder, "one_stage"), Layout.export_graph(folder, "stage1"),
                Layout.export_card(folder), Layout.export_reference(folder)]

    def monitor(self, name: str) -> Path:
        """``osd monitor``'s outputs for a split (``-``: a detection study's)."""
        return (self.detection if name == "-" else self.split(name)) / "monitor"

    def monitor_baseline(self, name: str) -> Path:
        """The line's own baseline for a split's monitor (``-``: a detection study's), sealed JSON."""
        return self.monitor(name) / "baseline.json"

    @staticmethod
    def export_baseline(folder: Path) -> Path:
        """The line's own baseline kept beside an export bundle (made on the inspection PC)."""
        return Path(folder) / "monitor_baseline.json"

    def detection_plot(self, kind: str) -> Path:
        """One of the detection report's figures (``scores``, ``roc``)."""
        return self.detection / "plots" / f"{kind}.png"

    def plot(self, name: str, kind: str) -> Path:
        """One of the report's figures of a split (``roc``, ``distance_hist``, ``latency``, ...)."""
        return self.plots(name) / f"{kind}.png"

    def cascade(self, name: str) -> Path:
        return self.split(name) / "cascade"

    def stage1_scores(self, name: str) -> Path:
        return self.cascade(name) / "stage1_scores.npz"

    def cascade_evaluation(self, name: str) -> Path:
        """The cascade step's record (:class:`osd.records.CascadeResult`)."""
        return self.cascade(name) / "evaluation.npz"

    def cascade_predictions(self, name: str) -> Path:
        return self.cascade(name) / "predictions.csv"

    def outcomes(self, name: str) -> Path:
        return self.split(name) / "outcomes"

    def outcomes_evaluation(self, name: str) -> Path:
        """The outcomes step's record (:class:`osd.records.OutcomesResult`)."""
        return self.outcomes(name) / "evaluation.npz"

    def outcomes_predictions(self, name: str) -> Path:
        return self.outcomes(name) / "predictions.csv"

    def plots(self, name: str) -> Path:
        return self.split(name) / "plots"

    def metrics(self, name: str) -> Path:
        return self.split(name) / "metrics.json"

    def bench(self, name: str) -> Path:
        return self.split(name) / "bench.json"

    def bench_record(self, name: str) -> Path:
        """The bench step's record (:class:`osd.records.BenchResult`)."""
        return self.split(name) / "bench.npz"

    @property
    def summary(self) -> Path:
        return self.root / "summary.csv"

    @property
    def summary_three_outcome(self) -> Path:
        return self.root / "summary_three_outcome.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def summary_tex(self) -> Path:
        return self.root / "summary.tex"

    @property
    def report_record(self) -> Path:
        """The report's cache record (its key and what it returned)."""
        return self.root / "report.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def verdict_chart(self) -> Path:
        return self.root / "verdict.png"

    @property
    def patchcore(self) -> Path:
        return self.root / "patchcore"

    @property
    def detection(self) -> Path:
        """The detection study's folder (``project.study = detection``)."""
        return self.root / "detection"

    @property
    def detection_evaluation(self) -> Path:
        """The detection study's record (:class:`osd.pipeline.detection.DetectionResult`)."""
        return self.detection / "evaluation.npz"

    @property
    def detection_predictions(self) -> Path:
        return self.detection / "predictions.csv"

    @property
    def detection_metrics(self) -> Path:
        return self.detection / "metrics.json"

    @property
    def detection_export(self) -> Path:
        return self.detection / "export"

    @property
    def detector(self) -> Path:
        return self.patchcore / "patchcore.npz"

    @property
    def patchcore_stats(self) -> Path:
        """The PatchCore fit's statistics (sizes, timings, in-domain rates), for a reader (the report reads
        the fit's artifact)."""
        return self.patchcore / "fit_stats.json"

    @property
    def patchcore_threshold(self) -> Path:
        return self.patchcore / "threshold.json"

    @property
    def patchcore_config(self) -> Path:
        return self.patchcore / "config.json"

    @property
    def patchcore_scores(self) -> Path:
        """Stage-1 scores of the calibration and test normals, by crop or image id."""
        return self.patchcore / "scores.json"

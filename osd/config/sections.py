"""The project file's sections: one frozen dataclass each, every setting one field whose metadata
carries its help text (written into a new project file) and the constraints checked on load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PROJECT_FILE = "osd.toml"
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
# "a+normal": split a's variant with the normal images as one more known class (normal.in_domain only)
NORMAL_CLASS_SUFFIX = "+normal"
SPLIT_NAMES = ("a", "b", "c")  # NEU's splits; a project may name others ([splits.<name>])


def opt(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field with its help text and constraints (gt, ge, le, lt, choices)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


@dataclass(frozen=True)
class ProjectSection:
    output_dir: str = opt("outputs", "folder for every artifact, relative to this file")
    seed: int = opt(0, "seed for splits, training and sampling", ge=0)
    seeds: list[int] = opt([], "run-all repeats the study once per seed, e.g. [0, 1, 2] ([] = project.seed only); "
                               "runs of other seeds live in <output_dir>/seed_<n>/")
    device: str = opt("auto", "compute device: auto | cpu | cuda | mps", choices=("auto", "cpu", "cuda", "mps"))
    threads: int = opt(0, "CPU threads for torch (0 = torch's default)", ge=0)
    workers: int = opt(2, "processes that decode images while the model computes (0 = decode in this process); "
                          "the results do not depend on it; fewer are started where they would take cores the model "
                          "computes on (see docs/reference.md, Speed)", ge=0)
    study: str = opt("open_set", "open_set (known classes, unknown ones, the two approaches) | detection (good and "
                                 "bad parts: stage 1 alone, no_defect / defect; for zero or one defect class)",
                     choices=("open_set", "detection"))
    precision: str = opt("auto", "arithmetic of the classifier's training: auto (fp32 until bf16 is shown "
                                 "non-inferior; see docs/reference.md, Precision) | fp32 | bf16 (CPUs with bf16 "
                                 "hardware, accelerators) | fp16 (accelerators); every score compared with a "
                                 "threshold is computed in fp32, statistics in float64",
                         choices=("auto", "fp32", "bf16", "fp16"))


@dataclass(frozen=True)
class NeuSection:
    root: str = opt("data/NEU-DET", "NEU images: NEU-CLS or NEU-DET files, or one folder per class")


@dataclass(frozen=True)
class NormalSection:
    severstal_root: str = opt("", "Severstal folder with train_images/ and train.csv ('' = not used)")
    folder: str = opt("", "instead of Severstal: a plain folder of defect-free images ('' = not used)")
    crop_size: int = opt(256, "square crops cut from each normal image (pixels)", gt=0)
    crop_stride: int = opt(256, "step between crops (pixels)", gt=0)
    dark_threshold: int = opt(30, "grey level under which a pixel counts as background", ge=0, le=255)
    max_dark_fraction: float = opt(0.5, "crops with more background than this are skipped", ge=0.0, le=1.0)
    min_defect_fraction: float = opt(
        0.01, "stage 1's in-domain test: a crop of a defective Severstal image is defective when its masks cover "
        "at least this share of it, normal when they cover none; crops in between are left out", gt=0.0, le=1.0)
    bank_fraction: float = opt(0.7, "share of normal images (by image id) for the memory bank", gt=0.0, lt=1.0)
    calibration_fraction: float = opt(0.15, "share for the threshold; the rest is test", gt=0.0, lt=1.0)
    in_domain: bool = opt(
        False, "the normal images come from the same line as the defect classes: the held-out normal images join "
        "every split's test set and the study reports three outcomes (no_defect, a known class, unknown); false "
        "for the NEU + Severstal study, where they come from another source")


@dataclass(frozen=True)
class SplitDef:
    known: list[str] = opt([], "known classes: train, validation and test")
    unknown: list[str] = opt([], "unknown classes: test only")


NEU_SPLITS = {
    "a": SplitDef(["inclusion", "patches", "pitted_surface", "rolled-in_scale"], ["crazing", "scratches"]),
    "b": SplitDef(["crazing", "patches", "rolled-in_scale", "scratches"], ["inclusion", "pitted_surface"]),
    "c": SplitDef(["crazing", "inclusion", "pitted_surface", "scratches"], ["patches", "rolled-in_scale"]),
}
SPLIT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class SplitsSection:
    train_fraction: float = opt(0.6, "share of each known class used for training", gt=0.0, lt=1.0)
    val_fraction: float = opt(0.2, "share for validation; the rest is test", gt=0.0, lt=1.0)
    selection_fraction: float = opt(
        0.5, "share of the validation images that only choose the best training epoch; the others only set "
        "tau and kappa, so the thresholds rest on images no choice has seen (0: keep the last epoch and set "
        "the thresholds on all validation images)", ge=0.0, lt=1.0)
    unknown_test: str = opt(
        "balanced",
        "unknown test images: balanced (as many per class as a known class has) | all",
        choices=("balanced", "all"),
    )
    design: str = opt(
        "listed", "listed (the [splits.<name>] tables as written; NEU's seed splits a, b, c by default) | complete "
        "(every way of hiding unknown_per_split of the classes the tables name: NEU, 2 of 6 = 15 splits, named by "
        "the classes they hide; the answer's estimand is their mean, see docs/reference.md)",
        choices=("listed", "complete"))
    unknown_per_split: int = opt(2, "unknown classes per split of the complete design", ge=1)
    named: dict[str, SplitDef] = field(
        default_factory=lambda: dict(NEU_SPLITS),
        metadata={"help": "one [splits.<name>] table per split; names: letters, digits, - and _", "tables": True},
    )

    def __getattr__(self, name: str) -> SplitDef:  # cfg.splits.a
        named = self.__dict__.get("named", {})
        if name in named:
            return named[name]
        raise AttributeError(name)


WEIGHTS_HELP = "imagenet (torchvision download) | none (random init) | path to a .pth state dict"


@dataclass(frozen=True)
class ClassifierSection:
    arch: str = opt("resnet50", "torchvision classification model (resnet18, resnet50, wide_resnet50_2 ...)")
    weights: str = opt("imagenet", WEIGHTS_HELP)
    image_size: int = opt(224, "input size in pixels (NEU images are 200x200)", ge=32)
    epochs: int = opt(30, "most training epochs; the best one on the selection images (splits.selection_fraction) "
                      "is kept", gt=0)
    patience: int = opt(3, "stop after this many epochs without a better result on the selection images "
                           "(0 = train every epoch)", ge=0)
    batch_size: int = opt(32, "training batch size", gt=0)
    lr: float = opt(0.001, "peak learning rate (one-cycle schedule)", gt=0.0)
    weight_decay: float = opt(0.0005, "weight decay", ge=0.0)
    optimizer: str = opt("adamw", "adamw | sgd", choices=("adamw", "sgd"))
    label_smoothing: float = opt(0.0, "label smoothing of the cross-entropy loss", ge=0.0, lt=1.0)
    augment: bool = opt(True, "flips, 90-degree turns and small shifts (no colour changes); with train_blocks >= 0 "
                              "the 8 turns and flips only")
    train_blocks: int = opt(
        -1, "regimen: -1 = fine-tune every block (the default); N >= 0 = train the last N blocks and the head, the "
        "blocks before them frozen at their pretrained weights, their output computed once per image and view and "
        "shared by every split and seed (ResNet: 4 blocks; EfficientNet: 8; 0 = the head only)", ge=-1)
    workers: int = opt(0, "data-loading worker processes", ge=0)


@dataclass(frozen=True)
class OsrSection:
    acceptance: float = opt(0.95, "share of known validation images accepted by tau and kappa", gt=0.0, lt=1.0)
    covariance: str = opt(
        "ledoitwolf", "shared covariance estimator: ledoitwolf | oas | empirical",
        choices=("ledoitwolf", "oas", "empirical"),
    )
    normalize: str = opt("l2", "embedding normalisation before Mahalanobis: l2 | none", choices=("l2", "none"))
    features: str = opt(
        "penultimate", "features scored: penultimate (the study's locked method) | multilayer (every residual "
        "stage, Lee et al. 2018; reported as a variant either way)",
        choices=("penultimate", "multilayer"),
    )
    pooling: str = opt(
        "mean", "per-channel statistics of each stage for multilayer: mean | mean_std", choices=("mean", "mean_std"),
    )
    baselines: list[str] = opt(["energy", "maxlogit", "vim", "knn"],
                               "out-of-distribution baselines reported beside the locked method, from the same cached "
                               "embeddings and logits, each with its own threshold: energy | maxlogit | vim | knn; and odin "
                               "(opt-in: a second pass over the threshold and test images, ~6x a forward pass); and gen, react, "
                               "ash, mahalanobis_norm, rmds, scale, fdbd, nnguide, nci (opt-in: pytorch-ood's generalized "
                               "entropy, ReAct, ASH-S, Mahalanobis++, relative Mahalanobis, SCALE, fDBD, NNGuide and NCI, "
                               "pip install osd[ood])",
                               choices=("energy", "maxlogit", "vim", "knn", "odin", "gen", "react", "ash",
                                        "mahalanobis_norm", "rmds", "scale", "fdbd", "nnguide", "nci"))


@dataclass(frozen=True)
class PatchcoreSection:
    backbone: str = opt("wide_resnet50_2", "torchvision ResNet used as patch feature extractor")
    weights: str = opt("imagenet", WEIGHTS_HELP)
    image_size: int = opt(224, "input size in pixels", ge=32)
    layers: list[str] = opt(["layer2", "layer3"], "backbone layers whose features are concatenated")
    coreset_ratio: float = opt(0.02, "share of patch features kept in the memory bank", gt=0.0, le=1.0)
    projection_dim: int = opt(128, "random projection size used for coreset selection", gt=0)
    coreset: str = opt("chunked", "coreset selection: chunked (greedy k-center per chunk of patches as they stream: "
                                  "time linear in the patches, memory one chunk) | greedy (exact greedy over every "
                                  "patch: the reference, time grows with the square of the data)",
                       choices=("chunked", "greedy"))
    coreset_chunk: int = opt(20_000, "patches per chunk of the chunked coreset (fewer than this: the exact greedy)",
                             gt=0)
    reduce_dim: int = opt(0, "random projection of the stored features (0 = keep full dimension)", ge=0)
    max_bank_images: int = opt(1000, "cap on memory-bank images (a seeded sample of the bank share); the chunked "
                                     "coreset's fit grows linearly with it", gt=0)
    num_neighbors: int = opt(1, "1 = max patch distance; >1 = the paper's re-weighting over that many", gt=0)
    search: str = opt("auto", "nearest-neighbour search: auto (exact up to exact_up_to bank rows, the approximate "
                              "inverted file above, when faiss is installed) | torch (exact) | faiss (exact, flat index) "
                              "| ivf (approximate: faiss inverted file, ivf_probe lists per query)",
                      choices=("auto", "torch", "faiss", "ivf"))
    exact_up_to: int = opt(50_000, "largest bank (rows) that search = auto searches exactly", gt=0)
    ivf_probe: int = opt(16, "inverted-file lists compared per query (of about 4 sqrt(bank rows)); more = closer "
                             "to exact, slower", gt=0)
    batch_size: int = opt(8, "images per feature-extraction batch", gt=0)
    acceptance: float = opt(0.95, "share of calibration normals accepted by the threshold", gt=0.0, lt=1.0)


@dataclass(frozen=True)
class CascadeSection:
    use_kappa: bool = opt(True, "stage 2 calls an image unknown when its max softmax < kappa")
    mode: str = opt(
        "ignore_no_defect", "mode printed first: strict | ignore_no_defect",
        choices=("strict", "ignore_no_defect"),
    )


@dataclass(frozen=True)
class StatsSection:
    bootstrap: int = opt(1000, "bootstrap replicates for 95% intervals and the paired verdict (0 = none)", ge=0)


@dataclass(frozen=True)
class BenchSection:
    batch_size: int = opt(16, "batch size for the throughput measurement", gt=0)
    runs: int = opt(20, "timed single-image runs", gt=0)
    warmup: int = opt(3, "untimed runs before timing", ge=0)

"""The project file (``osd.toml``): frozen dataclasses, loading, ``--set`` overrides, validation.

Every setting lives in one dataclass field. Field metadata carries the help text written
into a new project file and the constraints checked on load, so the file ``osd init``
writes, the validation and the defaults cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

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
    augment: bool = opt(True, "flips, 90-degree turns and small shifts (no colour changes)")
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
                               "ash, mahalanobis_norm (opt-in: pytorch-ood's generalized entropy, ReAct, ASH-S and "
                               "Mahalanobis++, pip install osd[ood])",
                               choices=("energy", "maxlogit", "vim", "knn", "odin", "gen", "react", "ash",
                                        "mahalanobis_norm"))


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


@dataclass(frozen=True)
class Config:
    project: ProjectSection = field(default_factory=ProjectSection)
    neu: NeuSection = field(default_factory=NeuSection)
    normal: NormalSection = field(default_factory=NormalSection)
    splits: SplitsSection = field(default_factory=SplitsSection)
    classifier: ClassifierSection = field(default_factory=ClassifierSection)
    osr: OsrSection = field(default_factory=OsrSection)
    patchcore: PatchcoreSection = field(default_factory=PatchcoreSection)
    cascade: CascadeSection = field(default_factory=CascadeSection)
    stats: StatsSection = field(default_factory=StatsSection)
    bench: BenchSection = field(default_factory=BenchSection)
    base_dir: Path = field(default=Path("."), metadata={"internal": True})

    def path(self, value: str) -> Path:
        """Resolve a path setting against the project file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def output_dir(self) -> Path:
        return self.path(self.project.output_dir)

    def for_seed(self, seed: int, **settings: Any) -> Config:
        """The config of the study's run with ``seed``: the project seed's run in ``output_dir`` itself,
        every other seed's in ``output_dir/seed_<n>`` (so each run is cached on its own); ``settings``
        (dotted keys) are further changes made with it, e.g. a grid job's share of the threads."""
        if seed != self.project.seed:
            settings = {"project.seed": seed, "project.output_dir": str(Path(self.project.output_dir) / f"seed_{seed}"),
                        **settings}
        return self.replace(**settings) if settings else self

    def study_seeds(self, seeds: list[int] | None = None) -> list[int]:
        """The seeds a study runs: the given ones, else ``project.seeds``, else ``[project.seed]``."""
        return list(seeds or self.project.seeds or [self.project.seed])

    def seeds_on_disk(self) -> list[int]:
        """``project.seed`` and every seed with a ``seed_<n>`` folder of results under ``output_dir``."""
        found = {self.project.seed}
        root = self.output_dir
        if root.is_dir():
            for d in root.glob("seed_*"):
                if d.is_dir() and d.name[5:].lstrip("-").isdigit():
                    found.add(int(d.name[5:]))
        return sorted(found)

    @property
    def split_names(self) -> list[str]:
        return list(self.splits.named)

    def split_name(self, name: str) -> str:
        """A split's name as osd.toml spells it (``A`` -> ``a``): the one place a split name is normalised;
        an unknown one is a ConfigError listing the choices."""
        if name.endswith(NORMAL_CLASS_SUFFIX) and len(name) > len(NORMAL_CLASS_SUFFIX):
            return self.split_name(name[: -len(NORMAL_CLASS_SUFFIX)]) + NORMAL_CLASS_SUFFIX
        if name not in self.splits.named and name.lower() in self.splits.named:
            name = name.lower()
        if name not in self.splits.named:
            raise ConfigError(f"unknown split {name!r}: choose one of {', '.join(self.splits.named)}")
        return name

    def split(self, name: str) -> SplitDef:
        """The split's class lists (a normal-class variant's are its base split's)."""
        return self.splits.named[self.split_name(name).removesuffix(NORMAL_CLASS_SUFFIX)]

    def section(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(getattr(self, name))

    def flat(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Dotted settings (``"classifier.arch": "resnet18"``) of whole sections or single keys."""
        flat: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}", v)
            else:
                flat[prefix] = value

        for f in public_fields(Config):
            d = dataclasses.asdict(getattr(self, f.name))
            if f.name == "splits":
                d.update(d.pop("named"))
            walk(f.name, d)
        if keys is None:
            return flat
        keys = list(keys)
        return {k: v for k, v in flat.items() if any(k == s or k.startswith(s + ".") for s in keys)}

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """``key: recorded value (now: current value)`` for each recorded setting that differs now.

        Settings that cannot change a number (device, threads, output folder, which mode is shown
        first) are not compared.
        """
        now = self.flat()
        out = []
        for k, v in sorted(recorded.items()):
            if k in NOT_RESULT_SETTINGS:
                continue
            if now.get(k, "<absent>") != v:
                out.append(f"{k} = {v!r} (osd.toml now: {now.get(k, '<absent>')!r})")
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: dataclasses.asdict(getattr(self, f.name)) for f in public_fields(Config)}
        out["splits"].update(out["splits"].pop("named"))
        out["base_dir"] = str(self.base_dir)
        return out

    def replace(self, **changes: Any) -> Config:
        """A copy with whole sections or dotted settings changed: ``replace(**{"classifier.epochs": 3})``."""
        return apply_overrides(self, changes)


# Settings that change where or how fast a result is computed, never the result itself.
NOT_RESULT_SETTINGS = frozenset({"project.device", "project.threads", "project.workers", "project.output_dir",
                                 "cascade.mode"})


def public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


# ---------------------------------------------------------------- building from dicts


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_value(key: str, value: Any, tp: Any, meta: dict[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if origin is list and typing.get_args(tp) == (int,):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in value):
            raise ConfigError(f"{key}: must be a list of non-negative integers, got {value!r}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{key}: lists a value twice: {value}")
        return list(value)
    if origin is list:
        if isinstance(value, str):  # a single class name is a list of one
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
        value = [v.strip() for v in value]
        bad = [v for v in value if meta.get("choices") and v not in meta["choices"]]
        if bad:  # checked when the config loads, not when a step first reads it
            raise ConfigError(f"{key}: unknown {bad[0]!r}; choose from {', '.join(meta['choices'])}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {value!r}")
    for name, op, word in (("gt", float.__gt__, ">"), ("ge", float.__ge__, ">="),
                           ("lt", float.__lt__, "<"), ("le", float.__le__, "<=")):
        if name in meta and not op(float(value), float(meta[name])):
            raise ConfigError(f"{key}: must be {word} {meta[name]}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    return value


def _unknown_key(prefix: str, key: str, valid: list[str]) -> ConfigError:
    where = f"{prefix}.{key}" if prefix else key
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown setting{hint} (valid: {', '.join(valid)})")


def _build_splits(data: dict[str, Any], base: SplitsSection | None, replace: bool) -> SplitsSection:
    """``[splits]``: its settings, and one ``[splits.<name>]`` table per split.

    A project file whose tables are all named like NEU's splits (a, b, c) and name only NEU's classes
    changes those and keeps the others; a file with any other split name or class, or whose complete
    tables together name only a subset of NEU's classes, has exactly its own tables as its splits. A
    ``--set splits.<name>.…`` override changes or adds that one split.
    """
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    base = base if base is not None else SplitsSection()
    out = _build(SplitsSection, {k: v for k, v in scalars.items()}, "splits", base, skip={"named"})
    # a file naming only NEU's splits with NEU's classes changes those and keeps the rest (as every
    # setting does); a file naming any other split, or any class that is not NEU's (a user's own
    # classes, whatever the split is called), defines the project's splits: exactly its tables
    def foreign(name: str, table: Any) -> bool:
        classes = [*(table.get("known") or []), *(table.get("unknown") or [])] if isinstance(table, dict) else []
        return name not in NEU_SPLITS or any(c not in NEU_CLASSES for c in classes)

    named_classes = {c for t in tables.values() if isinstance(t, dict)
                     for c in [*(t.get("known") or []), *(t.get("unknown") or [])]}
    # a subset of NEU's classes (four NEU class folders, say) is own data too: its splits are exactly
    # the file's, never NEU's built-in ones merged back in (a phantom split naming absent classes)
    subset = bool(named_classes) and named_classes < set(NEU_CLASSES) and any(
        isinstance(t, dict) and t.get("known") and t.get("unknown") for t in tables.values())
    own = replace and (subset or any(foreign(name, t) for name, t in tables.items()))
    named = {} if own else dict(base.named)
    for name, table in tables.items():
        if not SPLIT_NAME.match(name):
            raise ConfigError(f"splits.{name}: a split name is lower-case letters, digits, - and _ (at most 32)")
        start = base.named.get(name) or NEU_SPLITS.get(name) or SplitDef()
        named[name] = _build(SplitDef, table, f"splits.{name}", start)
    if not named:
        raise ConfigError("splits: define at least one [splits.<name>] table")
    return dataclasses.replace(out, named=named)


def _build(cls: type, data: dict[str, Any], prefix: str, base: Any = None, skip: set[str] | None = None,
           replace_splits: bool = True) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: must be a table of settings, got {data!r}")
    fields = {f.name: f for f in public_fields(cls) if f.name not in (skip or set())}
    hints = _hints(cls)
    for key in data:
        if key not in fields:
            raise _unknown_key(prefix, key, list(fields))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        current = getattr(base, name) if base is not None else None
        tp = hints[name]
        if tp is SplitsSection:
            kwargs[name] = _build_splits(data.get(name, {}), current, replace_splits)
        elif dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data.get(name, {}), key, current)
        elif name in data:
            kwargs[name] = _check_value(key, data[name], tp, dict(f.metadata))
        elif current is not None:
            kwargs[name] = current
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    s = cfg.splits
    if s.train_fraction + s.val_fraction >= 1.0:
        raise ConfigError("splits.val_fraction: train_fraction + val_fraction must be < 1 (the rest is test)")
    n = cfg.normal
    if n.bank_fraction + n.calibration_fraction >= 1.0:
        raise ConfigError("normal.calibration_fraction: bank_fraction + calibration_fraction must be < 1")
    if n.severstal_root and n.folder:
        raise ConfigError("normal.folder: set either normal.severstal_root or normal.folder, not both")
    for name, sd in s.named.items():
        if len(sd.known) < 2:
            raise ConfigError(f"splits.{name}.known: needs at least two known classes, got {sd.known}")
        if not sd.unknown:
            raise ConfigError(f"splits.{name}.unknown: needs at least one unknown class")
        both = sorted(set(sd.known) & set(sd.unknown))
        if both:
            raise ConfigError(f"splits.{name}: {', '.join(both)} is both known and unknown")
        for part in ("known", "unknown"):
            vals = getattr(sd, part)
            if len(set(vals)) != len(vals):
                raise ConfigError(f"splits.{name}.{part}: lists a class twice: {vals}")
    _refuse_repeated_splits(s.named)
    if cfg.patchcore.search in ("faiss", "ivf"):  # said when the config loads, not after feature extraction
        import importlib.util

        if importlib.util.find_spec("faiss") is None:
            raise ConfigError(f"patchcore.search = {cfg.patchcore.search}: needs faiss (pip install \"osd[scale]\"); "
                              "or use auto or torch")
    if len(cfg.patchcore.layers) < 1:
        raise ConfigError("patchcore.layers: name at least one layer")
    for layer in cfg.patchcore.layers:
        if layer not in ("layer1", "layer2", "layer3", "layer4"):
            raise ConfigError(f"patchcore.layers: {layer!r} is not one of layer1, layer2, layer3, layer4")


def _refuse_repeated_splits(named: dict[str, SplitDef]) -> None:
    """Two splits with the same known / unknown partition are one split counted twice: the study's
    answer treats splits as independent replications, so a repeat would be counted as evidence."""
    seen: dict[tuple[frozenset[str], frozenset[str]], str] = {}
    for name, sd in named.items():
        partition = (frozenset(sd.known), frozenset(sd.unknown))
        if partition in seen:
            raise ConfigError(f"splits.{name}: the same known and unknown classes as splits.{seen[partition]}; a "
                              "split repeated is not more evidence (the answer counts splits): remove one")
        seen[partition] = name


def from_dict(data: dict[str, Any], base_dir: Path = Path("."), base: Config | None = None) -> Config:
    """Build and validate a config from nested dicts (the parsed TOML)."""
    # Missing settings come from the base (or the defaults), so nested defaults such as
    # splits.a.known survive when a file sets only splits.a.unknown.
    cfg = _build(Config, data, "", base if base is not None else Config(), replace_splits=base is None)
    cfg = dataclasses.replace(cfg, base_dir=Path(base_dir).resolve())
    _validate(cfg)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as TOML (number, bool, list, quoted string) or else a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. classifier.epochs=5")
    key, raw = (part.strip() for part in text.split("=", 1))
    if not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a setting's name before '=', e.g. "
                          "classifier.epochs=5")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is a setting, not a section")
        node[parts[-1]] = value
    return nested


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Apply dotted-key overrides on top of a loaded config, validated like the file."""
    return from_dict(_nest(overrides), cfg.base_dir, base=cfg)


def project_file(path: str | Path | None) -> Path:
    p = Path(path or PROJECT_FILE).expanduser()
    if p.is_dir():
        p = p / PROJECT_FILE
    return p


def load(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Load ``osd.toml`` (a file or the folder holding it) and apply ``--set`` overrides."""
    p = project_file(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no project file here; create one with `osd init PATH` or pass -p PATH")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = from_dict(data, p.parent)
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
        cfg = apply_overrides(cfg, dict(items))
    return cfg


# ---------------------------------------------------------------- writing a commented file


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(cfg: Config, header: str = "") -> str:
    """The whole config as TOML, every setting present with its help text and default."""
    defaults = Config()
    lines = [header.rstrip(), ""] if header else []

    def section(title: str, obj: Any, default_obj: Any) -> None:
        lines.append(f"[{title}]")
        nested = []
        for f in public_fields(type(obj)):
            value = getattr(obj, f.name)
            if f.metadata.get("tables"):  # [splits.<name>] tables
                lines.append(f"# {f.metadata.get('help', '')}")
                nested += [(k, v, NEU_SPLITS[k] if k in NEU_SPLITS and set(v.known + v.unknown) <= set(NEU_CLASSES)
                            else SplitDef()) for k, v in value.items()]
                continue
            if dataclasses.is_dataclass(value):
                nested.append((f.name, value, getattr(default_obj, f.name)))
                continue
            default = getattr(default_obj, f.name)
            lines.append(f"# {f.metadata.get('help', '')} (default: {_toml_value(default)})")
            lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
        for name, value, default_value in nested:
            section(f"{title}.{name}", value, default_value)

    for f in public_fields(Config):
        section(f.name, getattr(cfg, f.name), getattr(defaults, f.name))
    return "\n".join(lines).rstrip() + "\n"


def write_setting(path: str | Path | None, key: str, value: Any) -> Path:
    """Set ``key`` (``section.name``) to ``value`` in the project file, every comment kept; the value is
    checked as ``--set`` checks it before the file is touched. Returns the file."""
    import os

    file = project_file(path)
    load(file, {key: value})  # a bad key or value raises here, with its key path
    section, name = key.rsplit(".", 1)
    lines = file.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
    literal = f"{name} = {_toml_value(value)}"
    if start is None:
        lines += ["", f"[{section}]", literal]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        at = next((i for i in range(start + 1, end) if re.match(rf"\s*{re.escape(name)}\s*=", lines[i])), None)
        if at is None:
            lines.insert(start + 1, literal)
        else:
            lines[at] = literal
    tmp = file.with_name(file.name + ".tmp")  # written whole, then moved: never a half-written project file
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, file)
    return file

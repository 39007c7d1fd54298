"""The whole project's settings (:class:`Config`) and how they are built from dicts and dotted keys,
validated with the key path of every error."""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osd.config.sections import (
    NEU_CLASSES,
    NEU_SPLITS,
    NORMAL_CLASS_SUFFIX,
    SPLIT_NAME,
    BenchSection,
    CascadeSection,
    ClassifierSection,
    NeuSection,
    NormalSection,
    OsrSection,
    PatchcoreSection,
    ProjectSection,
    SplitDef,
    SplitsSection,
    StatsSection,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib
from osd.errors import ConfigError
from osd.types import JsonObject, Settings


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

    def section(self, name: str) -> JsonObject:
        return dataclasses.asdict(getattr(self, name))

    def flat(self, keys: Iterable[str] | None = None) -> Settings:
        """Dotted settings (``"classifier.arch": "resnet18"``) of whole sections or single keys."""
        flat: Settings = {}

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

    def differences(self, recorded: Mapping[str, object]) -> list[str]:
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

    def to_dict(self) -> JsonObject:
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


def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _check_value(key: str, value: Any, tp: Any, meta: Mapping[str, object]) -> Any:
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


def _build_splits(data: Mapping[str, object], base: SplitsSection | None, replace: bool) -> SplitsSection:
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
    if out.design == "complete":  # the tables name the classes; the design is every way of hiding k of them
        from osd.config.design import complete_splits, design_classes

        named = complete_splits(design_classes(named), out.unknown_per_split)
    return dataclasses.replace(out, named=named)


def _refuse_repeated_known_sets(named: Mapping[str, SplitDef]) -> None:
    """Two splits with the same known classes (the same partition, or the same knowns with other unknowns)
    share one classifier, one tau and the same known test images (a training's key holds its train
    partition): one replicate counted twice, degrees of freedom that are not there. Refused, naming both."""
    seen: dict[frozenset[str], str] = {}
    for name, split in named.items():
        known = frozenset(split.known or ())
        if not known:
            continue
        if known in seen:
            raise ConfigError(f"splits.{name}: the same known classes as splits.{seen[known]} "
                              f"({', '.join(sorted(known))}): both would share one classifier and one tau, one "
                              "replicate counted twice; hide other classes in one of them, or remove it")
        seen[known] = name


def _build(cls: type, data: Mapping[str, object], prefix: str, base: Any = None, skip: set[str] | None = None,
           replace_splits: bool = True) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: must be a table of settings, got {data!r}")
    fields = {f.name: f for f in public_fields(cls) if f.name not in (skip or set())}
    hints = _hints(cls)
    for key in data:
        if key not in fields:
            raise _unknown_key(prefix, key, list(fields))
    kwargs: dict[str, object] = {}
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
    _refuse_repeated_known_sets(s.named)
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


def from_dict(data: Mapping[str, object], base_dir: Path = Path("."), base: Config | None = None) -> Config:
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
    if not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a setting's dotted name before '=' (no empty "
                          "part), e.g. classifier.epochs=5")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _nest(flat: Mapping[str, object]) -> dict[str, object]:
    nested: dict[str, object] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is a setting, not a section")
        node[parts[-1]] = value
    return nested


def apply_overrides(cfg: Config, overrides: Mapping[str, object]) -> Config:
    """Apply dotted-key overrides on top of a loaded config, validated like the file."""
    return from_dict(_nest(overrides), cfg.base_dir, base=cfg)

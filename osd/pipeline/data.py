"""Data access for the steps: the NEU index, split manifests, normal images and their crops, weights paths."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from osd import artifacts
from osd.config import NORMAL_CLASS_SUFFIX, Config
from osd.data import images
from osd.data.neu import NeuIndex, index_neu
from osd.data.severstal import index_folder, index_severstal
from osd.data.splits import (
    PARTITIONS,
    NormalSplit,
    SplitEntry,
    SplitManifest,
    file_digest,
    make_split,
    rng_for,
    split_normals,
)
from osd.errors import ConfigError, DataError
from osd.types import JsonObject


def _listing(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of every file under ``root``: what the index cache is keyed on,
    so a process that stays up (a Dask worker, a notebook) sees images that changed since its last call."""
    out = []
    for p in sorted(root.rglob("*")) if root.is_dir() else []:
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _neu(root: Path) -> tuple[NeuIndex, tuple[str, ...], tuple[Path, ...]]:
    return _neu_cached(root, _listing(root))


@functools.lru_cache(maxsize=8)
def _neu_cached(root: Path, listing: tuple[tuple[str, int, int], ...]) -> tuple[NeuIndex, tuple[str, ...],
                                                                                tuple[Path, ...]]:
    index = index_neu(root)
    good, bad = images.readable(list(index.paths), "NEU")
    keep = set(good)
    index = NeuIndex(index.root, index.layout, tuple(p for p in index.paths if p in keep),
                     tuple(lab for p, lab in zip(index.paths, index.labels) if p in keep))
    digests = tuple(file_digest(p) for p in index.paths)
    return index, digests, tuple(bad)


def neu_index(cfg: Config) -> tuple[NeuIndex, list[str]]:
    index, digests, _ = _neu(cfg.path(cfg.neu.root))
    return index, list(digests)


def split_manifest(cfg: Config, name: str, neu: tuple[NeuIndex, list[str]],
                   normals: Callable[[], NormalData | None]) -> SplitManifest:
    """The split's manifest, written to ``outputs/split_x/split_manifest.csv``: made from the job's
    index of the defect images (``neu``) and, with ``normal.in_domain``, its normal images' partitions
    (``normals``, asked only then). Steps read it from :meth:`osd.pipeline.job.Job.manifest`.

    With ``normal.in_domain`` the held-out normal images join the test set (role ``normal``); the
    split ``x+normal`` is the variant whose classifier learns the normal images as one more known
    class, ``no_defect`` (see :func:`with_normals`)."""
    if cfg.project.study == "detection":
        raise ConfigError(f"split {name}: a detection study (project.study = detection) has no splits and no "
                          "classifier: stage 1 alone answers no_defect / defect; its threshold is "
                          "patchcore.acceptance")
    index, digests = neu
    name = cfg.split_name(name)
    base = name.removesuffix(NORMAL_CLASS_SUFFIX)
    manifest = make_split(base, cfg.split(base), cfg.splits, cfg.project.seed, index, digests)
    if name != base and not cfg.normal.in_domain:
        raise ConfigError(f"split {name}: the normal-class variant needs normal images of the defects' line "
                          "(normal.in_domain = true and normal.folder or normal.severstal_root)")
    if cfg.normal.in_domain:
        manifest = with_normals(cfg, manifest, normals(), normal_class=name != base)
        manifest = dataclasses.replace(manifest, name=name)
    check_manifest(manifest)
    path = artifacts.Layout(cfg.output_dir).manifest(name)
    text = manifest.to_csv()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        artifacts.write_text(path, text)
    return manifest


def check_manifest(manifest: SplitManifest) -> list[str]:
    """Raise DataError when the split cannot be studied; return warnings for thin classes.

    Every known class needs training images, the split needs validation images (thresholds)
    and known and unknown test images, all before any training starts.
    """
    counts = manifest.counts()
    name = manifest.name
    problems = [f"known class {c!r} has no training images" for c in manifest.known
                if counts.get(c, {}).get("train", 0) == 0]
    if not manifest.part("threshold", "known"):
        problems.append("no validation images (tau and kappa are set on them)")
    if not manifest.part("test", "known"):
        problems.append("no known test images")
    if not manifest.part("test", "unknown"):
        problems.append("no unknown test images")
    if problems:
        raise DataError(f"split {name}: " + "; ".join(problems) + " (too few images per class? see osd data check)")
    labels_of: dict[str, set[str]] = {}
    for e in manifest.entries:
        labels_of.setdefault(e.digest, set()).add(e.label)
    clash = next((d for d, labels in labels_of.items() if len(labels) > 1), None)
    if clash is not None:
        files = sorted(e.rel or str(e.path) for e in manifest.entries if e.digest == clash)
        raise DataError(f"byte-identical images in different classes ({', '.join(files[:3])}: "
                        f"{', '.join(sorted(labels_of[clash]))}); one image cannot be two classes: remove or move one")
    return [f"split {name}: known class {c!r} has no {part} images (it has {sum(counts.get(c, {}).values())} in all)"
            for c in manifest.known for part in ("threshold", "test") if counts.get(c, {}).get(part, 0) == 0]


def with_normals(cfg: Config, manifest: SplitManifest, data: NormalData, normal_class: bool = False) -> SplitManifest:
    """The manifest with the held-out normal images as test images of role ``normal`` (true label
    ``no_defect``): every approach meets them under the same unit rule as ``predict``.

    ``normal_class``: also the variant's training data, the normal images as one more known class
    ``no_defect``: bank images for training and calibration images for epoch selection and tau, each
    drawn (seeded) to the mean size of a known class in that partition, so the class is not dominant.
    The test normals are the same in both, and no test image is used by any choice."""
    from osd.decide import NO_DEFECT

    def entries(paths, role: str, partition: str) -> list[SplitEntry]:
        return [SplitEntry(p, NO_DEFECT, role, partition, file_digest(p), str(p)) for p in paths]

    extra = entries(data.split.test, "normal", "test")
    known = manifest.known
    if normal_class:
        counts = manifest.counts()

        def drawn(paths: list[Path], part: str) -> list[Path]:
            n = round(sum(counts.get(c, {}).get(part, 0) for c in manifest.known) / len(manifest.known))
            if len(paths) <= n:
                return sorted(paths)
            return sorted(paths[i] for i in rng_for(cfg.project.seed, "normal-class", part).choice(len(paths), n,
                                                                                                   replace=False))

        cal = [data.split.calibration[i] for i in rng_for(cfg.project.seed, "normal-class", "calibration")
               .permutation(len(data.split.calibration))]
        n_sel = round(len(cal) * cfg.splits.selection_fraction)
        extra += (entries(drawn(list(data.split.bank), "train"), "known", "train")
                  + entries(drawn(cal[:n_sel], "epoch_select"), "known", "epoch_select")
                  + entries(drawn(cal[n_sel:], "threshold"), "known", "threshold"))
        known = (*known, NO_DEFECT)
    rows = sorted([*manifest.entries, *extra], key=lambda e: (PARTITIONS.index(e.partition), e.role, e.label,
                                                               str(e.path)))
    return SplitManifest(manifest.name, known, manifest.unknown, tuple(rows))


@dataclass(frozen=True)
class NormalData:
    source: str  # "severstal" | "folder"
    split: NormalSplit
    defective: tuple[Path, ...]
    masks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # defective image name -> RLE strings

    def fingerprint(self) -> str:
        """Identity of the normal images by content (a re-saved file with the same name and size counts)."""
        def ids(paths: tuple[Path, ...]) -> list[list[str]]:
            return [[p.name, artifacts.file_sha256(p)] for p in paths]

        return artifacts.cache_key(ids(self.split.bank), ids(self.split.calibration), ids(self.split.test))

    def defect_fingerprint(self) -> str:
        """Identity of the defective images and their masks (the in-domain test's inputs)."""
        return artifacts.cache_key([[p.name, artifacts.file_sha256(p), sorted(self.masks.get(p.name, ()))]
                                    for p in self.defective])


def refuse_cross_class(data: NormalData, defect_paths: Sequence[Path], defect_digests: Sequence[str]) -> None:
    """A good part byte-identical to a defect image is one part labelled both good and defective: its twin in
    the bank scores it near 0, so it passes and inflates the pass rate. Refused, naming both files."""
    defects = dict(zip(defect_digests, (str(p) for p in defect_paths)))
    for p in (*data.split.bank, *data.split.calibration, *data.split.test):
        twin = defects.get(file_digest(p))
        if twin is not None:
            raise DataError(f"{p}: byte-identical to the defect image {twin}; a part cannot be both good and "
                            "defective (its twin would score it as good): remove one copy")


def normal_data(cfg: Config) -> NormalData:
    n = cfg.normal
    if n.severstal_root:
        idx = index_severstal(cfg.path(n.severstal_root))
        paths, defective, source, masks = list(idx.normal), idx.defective, "severstal", idx.masks
    elif n.folder:
        paths, defective, source, masks = list(index_folder(cfg.path(n.folder))), (), "folder", {}
    else:
        raise DataError("no normal images configured: set normal.severstal_root or normal.folder in osd.toml")
    paths, _ = images.readable(paths, "normal")
    if len(paths) < 3:
        raise DataError(f"{len(paths)} readable normal image(s); PatchCore needs at least 3 (bank, calibration, test)")
    # byte-identical good parts stay in one partition (a twin in the bank would pass its copy in the test)
    split = split_normals(paths, n.bank_fraction, n.calibration_fraction, cfg.project.seed,
                          {p: file_digest(p) for p in paths})
    defective, _ = images.readable(list(defective), "defective Severstal")
    return NormalData(source, split, tuple(defective), dict(masks))


def weights_path(cfg: Config, weights: str) -> str:
    """``imagenet`` / ``none`` as they are; a file path read from the project file's folder."""
    w = weights.strip()
    return w.lower() if w.lower() in ("imagenet", "none") else str(cfg.path(w))


def weights_identity(cfg: Config, weights: str, arch: str | None = None) -> dict[str, str]:
    """What a cache key and a report need to know of the weights: their kind and, for a file, its content."""
    from osd.models.backbones import weights_identity as identity

    return identity(weights_path(cfg, weights), arch)


# settings that only write the [splits.<name>] tables, which the keys hold themselves
KEY_NEUTRAL = frozenset({"splits.design", "splits.unknown_per_split"})
# a setting added after results were cached counts in a key only away from its default (the value that
# reproduces the earlier results), so those results stay valid
ADDED_DEFAULTS = {"classifier.train_blocks": -1}


def settings_key(cfg: Config, sections: tuple[str, ...],
                 identity: Callable[[str, str | None], dict[str, str]] | None = None) -> JsonObject:
    """The settings a cache key depends on, with every weights setting replaced by its identity
    (a weights file counts by content, not by where it lies); ``identity(weights, arch)``: the job's,
    which hashes a weights file once."""
    flat = {k: v for k, v in cfg.flat(sections).items()
            if k not in KEY_NEUTRAL and not (k in ADDED_DEFAULTS and v == ADDED_DEFAULTS[k])}
    for k in [k for k in flat if k.endswith(".weights")]:
        section = k.split(".")[0]
        arch = getattr(getattr(cfg, section), "arch", None) or getattr(getattr(cfg, section), "backbone", None)
        flat[k] = identity(flat[k], arch) if identity else weights_identity(cfg, flat[k], arch)
    return flat


def stage1_sizes(cfg: Config):
    """The sizes stage-1 scoring reads (:class:`osd.patchcore.stage1.Stage1Sizes`) from the project's settings."""
    from osd.patchcore.stage1 import SETTINGS, Stage1Sizes

    return Stage1Sizes.from_settings(cfg.flat(SETTINGS))

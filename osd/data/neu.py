"""NEU surface-defect images in every layout users have, mapped to canonical class names.

Layouts: NEU-CLS flat files (``Cr_1.bmp``), NEU-DET flat files (``crazing_1.jpg``, optionally
under ``IMAGES/``), and class folders (``<root>/<class>/*`` or ``<root>/{train,valid,test}/<Class>/*``).
Class folders are the folders directly under the root (below any train/valid/test folder); a
user's folder names are the class names, verbatim. NEU's aliases (``Cr``, ``Pitted``, ``Rolled``)
apply to NEU's own file naming, and to class folders only when every folder is a NEU class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from osd.data.images import is_image_name
from osd.errors import DataError

# Lower-cased, separators removed -> canonical NEU class name.
ALIASES = {
    "cr": "crazing", "crazing": "crazing", "craze": "crazing",
    "in": "inclusion", "inclusion": "inclusion", "inclusions": "inclusion",
    "pa": "patches", "patches": "patches", "patch": "patches",
    "ps": "pitted_surface", "pittedsurface": "pitted_surface", "pitted": "pitted_surface",
    "rs": "rolled-in_scale", "rolledinscale": "rolled-in_scale", "rolled": "rolled-in_scale",
    "rolledin": "rolled-in_scale",
    "sc": "scratches", "scratches": "scratches", "scratch": "scratches",
}
PARTITION_DIRS = {"train", "training", "valid", "validation", "val", "test", "testing"}
# folders that hold a class's images without being a class themselves (<Class>/Imgs/*.jpg)
CONTAINER_DIRS = {"images", "imgs", "img", "image", "jpegimages", "pictures", "photos", "samples"}
# segmentation masks beside the images are never images of a class
MASK_DIRS = {"mask", "masks", "gt", "groundtruth", "ground_truth", "label", "labels", "annotations", "seg"}
_MASK_STEM = re.compile(r"(^|[_\-\s.])(mask|gt|label|seg)s?$", re.IGNORECASE)
_FLAT = re.compile(r"^(?P<cls>[A-Za-z][A-Za-z_\-]*?)[_\-]?\(?\d+\)?$")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


def canonical(name: str) -> str | None:
    """The canonical NEU class for a file prefix or folder name, or None."""
    return ALIASES.get(_key(name))


@dataclass(frozen=True)
class NeuIndex:
    """Every image found under a NEU root, with its class."""

    root: Path
    layout: str
    paths: tuple[Path, ...]
    labels: tuple[str, ...]
    masks_skipped: tuple[Path, ...] = ()
    class_folders: tuple[tuple[str, tuple[str, ...]], ...] = ()  # class -> the folders that fed it

    @property
    def label_rule(self) -> str:
        """Which rule named the classes, in words (osd data check says it)."""
        if self.layout == "class-folders":
            return "each image's class is the name of its class folder"
        if self.layout == "one-folder":
            return "one flat folder: every image is of one class, the folder's name"
        return "each image's class is read from its file name (NEU's own flat layout)"

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lab in self.labels:
            out[lab] = out.get(lab, 0) + 1
        return dict(sorted(out.items()))


def _flat_class(path: Path) -> str | None:
    m = _FLAT.match(path.stem)
    return canonical(m.group("cls")) if m else None


def index_neu(root: str | Path) -> NeuIndex:
    """Find every image under ``root`` and name its class; raise DataError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: NEU folder not found; set neu.root in osd.toml")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p))
    if not files:
        raise DataError(f"{root}: no image files found (expected NEU-CLS, NEU-DET or class folders)")
    files, masks = _drop_masks(root, files)

    flat = [(p, _flat_class(p)) for p in files]
    # NEU's file names name the class only in NEU's own flat layout (files directly under the root, or
    # under IMAGES/ or train/valid/test); in folders a user made, the folder is the label, whatever the
    # files are called (alpha/crazing_1.jpg is class "alpha")
    in_flat_folders = all(all(d.lower() in PARTITION_DIRS | CONTAINER_DIRS for d in p.relative_to(root).parts[:-1])
                          for p in files)
    if in_flat_folders and all(cls is not None for _, cls in flat):
        layout = "neu-cls" if any(re.match(r"^[A-Z][a-zA-Z]_", p.name) for p in files) else "neu-det"
        return NeuIndex(root, layout, tuple(p for p, _ in flat), tuple(c for _, c in flat))

    # Class folders: the class is the first folder under the root that is neither a partition
    # folder (train/valid/test) nor an image container (<Class>/Imgs); deeper folders belong to it
    # (dent/2024/*.jpg is class "dent"). One folder above every class folder is looked through.
    folders = []
    for p in files:
        rel = p.relative_to(root).parts[:-1]
        folders.append([d for d in rel if d.lower() not in PARTITION_DIRS | CONTAINER_DIRS])
    while folders and all(len(f) > 1 for f in folders) and len({f[0] for f in folders}) == 1:
        folders = [f[1:] for f in folders]
    paths, labels, fed = [], [], {}
    for p, names in zip(files, folders):
        cls = names[0] if names else _flat_class(p)
        if cls is None:
            continue  # a stray file at the top level has no class
        paths.append(p)
        labels.append(cls)
        fed.setdefault(cls, set()).add(str(p.parent.relative_to(root)))
    if not paths and all(p.parent == root for p in files):
        # one flat folder of images (a line's bad parts of one defect type): one class, the folder's name
        name = root.resolve().name or "defect"
        _refuse_reserved(root, {name})
        return NeuIndex(root, "one-folder", tuple(files), tuple(name for _ in files), tuple(masks))
    if not paths:
        raise DataError(f"{root}: found images but could not tell their classes (no class folders or NEU names)")
    # NEU's aliases rename folders only when every class folder is one of NEU's classes (NEU in class
    # folders: Crazing/, Pitted/, Rolled/ ...); a user's own folder names are the class names, verbatim
    found = set(labels)
    mapped = {c: canonical(c) for c in found}
    if all(mapped.values()) and len(set(mapped.values())) == len(found):
        labels = [mapped[c] for c in labels]
        fed = {mapped[c]: v for c, v in fed.items()}
    _refuse_reserved(root, set(labels))
    folders_of = tuple(sorted((c, tuple(sorted(v))) for c, v in fed.items()))
    return NeuIndex(root, "class-folders", tuple(paths), tuple(labels), tuple(masks), folders_of)


def _refuse_reserved(root: Path, classes: set[str]) -> None:
    from osd.decide import DECISION_LABELS

    clash = sorted(c for c in classes if c.strip().lower() in DECISION_LABELS)
    if clash:
        raise DataError(f"{root}: class folder {clash[0]!r} has the name of a decision label "
                        f"({', '.join(DECISION_LABELS)}); rename the folder")


def _drop_masks(root: Path, files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split image files from segmentation masks: files in mask folders, stems ending in mask / gt /
    label, and a PNG beside a non-PNG of the same stem (the usual image + mask pair)."""
    stems: dict[tuple[Path, str], set[str]] = {}
    for p in files:
        stems.setdefault((p.parent, p.stem), set()).add(p.suffix.lower())
    keep, masks = [], []
    for p in files:
        rel = [d.lower() for d in p.relative_to(root).parts[:-1]]
        paired_png = p.suffix.lower() == ".png" and len(stems[(p.parent, p.stem)]) > 1
        if any(d in MASK_DIRS for d in rel) or _MASK_STEM.search(p.stem) or paired_png:
            masks.append(p)
        else:
            keep.append(p)
    return keep, masks

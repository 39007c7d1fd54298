"""Step ``data check``: what data there is and what is wrong with it, collected rather than raised."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from osd.data import images
from osd.data.neu import index_neu
from osd.data.severstal import index_folder, index_severstal
from osd.data.splits import duplicate_groups
from osd.errors import OsdError
from osd.pipeline.data import check_manifest
from osd.pipeline.job import Job
from osd.records import Record
from osd.types import JsonObject


@dataclass(frozen=True)
class DataReport(Record):
    """What ``osd data check`` found: the defect images per class and split, their formats and sizes,
    unreadable files, duplicates and label conflicts, the normal images' partitions; ``problems``
    make the data unusable, ``warnings`` need the user's attention, ``notes`` say what was seen."""

    neu_root: str
    neu_layout: str = ""
    label_rule: str = ""
    neu_counts: dict[str, int] = field(default_factory=dict)
    image_formats: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)  # path, reason
    image_size_summary: JsonObject = field(default_factory=dict)
    duplicates: list[list[str]] = field(default_factory=list)
    label_conflicts: list[dict[str, str]] = field(default_factory=list)  # byte-identical files, different classes
    class_folders: dict[str, list[str]] = field(default_factory=dict)  # class -> folders that fed it
    splits: dict[str, JsonObject] = field(default_factory=dict)
    normal: JsonObject = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # usable, but worth the user's attention
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> JsonObject:
        return {**super().to_dict(), "ok": self.ok}


def summarise_sizes(sizes: dict[str, int], top: int = 5) -> JsonObject:
    """Distinct sizes, width and height (min / median / max over images) and the commonest few."""
    import numpy as np

    if not sizes:
        return {}
    w = np.repeat([int(k.split("x")[0]) for k in sizes], list(sizes.values()))
    h = np.repeat([int(k.split("x")[1]) for k in sizes], list(sizes.values()))
    return {"distinct": len(sizes), "images": int(sum(sizes.values())),
            "width": {"min": int(w.min()), "median": float(np.median(w)), "max": int(w.max())},
            "height": {"min": int(h.min()), "median": float(np.median(h)), "max": int(h.max())},
            "commonest": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:top])}


def check_data(job: Job) -> DataReport:
    """Everything a user needs to know about their data; problems are collected, not raised."""
    cfg = job.cfg
    root = cfg.path(cfg.neu.root)
    report = DataReport(neu_root=str(root) if cfg.neu.root.strip() else "")
    detection = cfg.project.study == "detection"
    raw, defect_digests = None, {}
    if cfg.neu.root.strip() or not detection:
        try:
            raw = index_neu(root)
        except OsdError as exc:
            report.problems.append(str(exc))
    if raw is not None:
        report = replace(report, neu_layout=raw.layout, label_rule=raw.label_rule,
                         class_folders={c: list(f) for c, f in raw.class_folders})
        formats: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for p in raw.paths:
            info = images.inspect(p)  # decodes every pixel: truncated files are caught here
            if isinstance(info, str):
                report.unreadable.append({"path": str(p), "reason": info.replace(str(p), "<file>")})
                continue
            formats[info[0]] = formats.get(info[0], 0) + 1
            size = f"{info[1][0]}x{info[1][1]}"
            sizes[size] = sizes.get(size, 0) + 1
        report = replace(report, image_formats=formats, image_sizes=sizes, image_size_summary=summarise_sizes(sizes))
        if raw.masks_skipped:
            report.notes.append(f"{len(raw.masks_skipped)} mask file(s) beside the images were left out "
                                f"(e.g. {raw.masks_skipped[0]})")
        index, digests = job.neu
        defect_digests = {d: str(p) for p, d in zip(index.paths, digests)}
        duplicates = [sorted(str(p) for p in g) for g in duplicate_groups(list(index.paths), digests)]
        label_of = {str(p): lab for p, lab in zip(index.paths, index.labels)}
        report = replace(report, neu_counts=index.counts(), duplicates=duplicates,
                         label_conflicts=[{p: label_of.get(p, "?") for p in g} for g in duplicates
                                          if len({label_of.get(p) for p in g}) > 1])
        for c in report.label_conflicts:
            report.notes.append("label conflict: the same image (byte-identical) is labelled "
                                + " and ".join(f"{lab} ({Path(p).name})" for p, lab in c.items())
                                + "; keep it in one class folder")
        if report.unreadable:
            report.notes.append(f"{len(report.unreadable)} unreadable NEU file(s) will be skipped")
        for name in ([] if detection else cfg.split_names):
            try:
                m = job.manifest(name)
            except OsdError as exc:
                report.problems.append(str(exc))
                continue
            report.warnings.extend(check_manifest(m))
            report.splits[name] = {
                "known": list(m.known), "unknown": list(m.unknown), "counts": m.counts(),
                "manifest": str(job.layout.manifest(name)),
            }
    report = replace(report, normal=_check_normal(job, report, defect_digests))
    if detection:
        report.notes.append(_detection_note(job, report))
    return report


def _detection_note(job: Job, report: DataReport) -> str:
    """What the detection study will test, in one line."""
    from osd.pipeline.detection import defect_images

    try:
        paths, classes, source = defect_images(job)
    except OsdError as exc:
        report.problems.append(str(exc))
        return "detection study: the defect images cannot be read"
    held_out = (report.normal.get("partitions") or {}).get("test", {}).get("images", 0)
    counts = ", ".join(f"{c} {classes.count(c)}" for c in sorted(set(classes))) or "none"
    return (f"detection study (project.study = detection): test = {held_out} held-out normal image(s) and "
            f"{len(paths)} defect image(s) ({counts}) from {source}; each image is answered no_defect / defect"
            + ("" if paths else "; without defect images only the normal pass rate can be measured"))


def _partition_crops(job: Job, data: Any) -> tuple[JsonObject, list[str]]:
    """Images and crops per normal partition, and the images smaller than a crop (said once, not per image)."""
    from osd.patchcore.stage1 import crop_boxes_of

    parts, small, sizes = {}, [], job.stage1_sizes
    for part in ("bank", "calibration", "test"):
        paths = getattr(data.split, part)
        crops = sum(len(crop_boxes_of(p, sizes, small)) for p in paths)  # small images named, said once below
        parts[part] = {"images": len(paths), "crops": crops}
    return parts, small


def _normal_duplicates(data: Any, report: DataReport, defects: dict[str, str]) -> list[dict[str, str]]:
    """Byte-identical normal images, each with its partition (they are kept in one), and normal images
    identical to a defect image (a good part that is also labelled a defect): noted, with paths."""
    from osd.data.splits import file_digest

    where = {p: part for part in ("bank", "calibration", "test") for p in getattr(data.split, part)}
    digest = {p: file_digest(p) for p in where}
    groups = duplicate_groups(list(where), [digest[p] for p in where])
    out = [{str(p): where[p] for p in sorted(g)} for g in groups]
    if out:
        spread = sum(len(set(g.values())) > 1 for g in out)
        report.notes.append(f"{len(out)} group(s) of byte-identical normal images ({sum(len(g) for g in out)} images), "
                            "each kept in one partition"
                            + (f"; {spread} span partitions (a bug: please report it)" if spread else "")
                            + ": e.g. " + ", ".join(f"{Path(p).name} ({part})" for p, part in list(out[0].items())[:2]))
    both = [(str(p), defects[d]) for p, d in digest.items() if d in defects]
    if both:
        report.problems.append(f"{len(both)} normal image(s) are byte-identical to a defect image (e.g. "
                               f"{Path(both[0][0]).name} = {Path(both[0][1]).name}): a part cannot be both good and "
                               "defective (its twin in the bank would pass it); remove one copy")
        out += [{a: "normal", b: "defect"} for a, b in both]
    return out


def _check_normal(job: Job, report: DataReport, defects: dict[str, str]) -> JsonObject:
    """The normal images: sources, partitions, crops, duplicates (``defects``: digest -> a defect image)."""
    cfg = job.cfg
    n = cfg.normal
    if not (n.severstal_root or n.folder):
        report.notes.append("no normal images configured (normal.severstal_root / normal.folder): "
                            "the cascade's stage 1 cannot be fitted")
        return {}
    out: JsonObject = {}
    try:
        if n.severstal_root:
            idx = index_severstal(cfg.path(n.severstal_root))
            out.update(source="severstal", root=str(idx.root), csv_format=idx.csv_format,
                       normal_images=len(idx.normal), defective_images=len(idx.defective),
                       missing_files=list(idx.missing))
            if idx.missing:
                report.notes.append(f"train.csv names {len(idx.missing)} image(s) not in train_images/")
        else:
            out.update(source="folder", root=str(cfg.path(n.folder)), normal_images=len(index_folder(cfg.path(n.folder))))
        from osd.pipeline.data import normal_data

        data = normal_data(cfg)  # not job.normals, which refuses a cross-class twin: here it is listed, as a problem
        parts, small = _partition_crops(job, data)
        out["partitions"] = parts
        out["duplicates"] = _normal_duplicates(data, report, defects)
        if small:
            out["smaller_than_crop_size"] = small
            report.notes.append(f"{len(small)} normal image(s) are smaller than normal.crop_size = {n.crop_size}: each "
                                "is cropped at its own short side and resized like the others (e.g. "
                                + ", ".join(small[:3]) + ")" + ("; --verbose lists all" if len(small) > 3 else ""))
        cap = cfg.patchcore.max_bank_images
        out["bank_images_used"] = min(cap, parts["bank"]["images"])
        if parts["bank"]["images"] > cap:
            report.notes.append(f"PatchCore's bank uses {cap} of the {parts['bank']['images']} bank-share normal "
                                f"images (a seeded sample: patchcore.max_bank_images = {cap})")
        if n.in_domain and cfg.project.study != "detection":
            report.notes.append(f"normal.in_domain: the {parts['test']['images']} held-out normal image(s) join every "
                                "split's test set (three outcomes; see osd outcomes)")
        if any(v["crops"] == 0 for v in parts.values()):
            report.problems.append("a normal partition has no usable crops (too dark? see normal.max_dark_fraction)")
    except OsdError as exc:
        report.problems.append(str(exc))
    return out

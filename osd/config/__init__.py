"""The project file (``osd.toml``): frozen dataclasses, loading, ``--set`` overrides, validation.

Every setting lives in one dataclass field. Field metadata carries the help text written
into a new project file and the constraints checked on load, so the file ``osd init``
writes, the validation and the defaults cannot drift apart. Three rooms: the sections
(:mod:`osd.config.sections`), the whole config and its building and validation
(:mod:`osd.config.model`), the file on disk (:mod:`osd.config.files`).
"""

from osd.config.files import load, project_file, render_toml, write_setting
from osd.config.model import (
    NOT_RESULT_SETTINGS,
    Config,
    apply_overrides,
    from_dict,
    parse_override,
    public_fields,
)
from osd.config.sections import (
    NEU_CLASSES,
    NEU_SPLITS,
    NORMAL_CLASS_SUFFIX,
    PROJECT_FILE,
    SPLIT_NAMES,
    WEIGHTS_HELP,
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

__all__ = [
    "NEU_CLASSES", "NEU_SPLITS", "NORMAL_CLASS_SUFFIX", "NOT_RESULT_SETTINGS", "PROJECT_FILE", "SPLIT_NAMES",
    "WEIGHTS_HELP", "BenchSection", "CascadeSection", "ClassifierSection", "Config", "NeuSection", "NormalSection",
    "OsrSection", "PatchcoreSection", "ProjectSection", "SplitDef", "SplitsSection", "StatsSection",
    "apply_overrides", "from_dict", "load", "parse_override", "project_file", "public_fields", "render_toml",
    "write_setting",
]

"""The project file on disk: loading ``osd.toml`` (with ``--set`` overrides) and writing it, commented."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from osd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from osd.config.model import Config, apply_overrides, from_dict, parse_override, public_fields
from osd.config.sections import NEU_CLASSES, NEU_SPLITS, PROJECT_FILE, SplitDef


def project_file(path: str | Path | None) -> Path:
    p = Path(path or PROJECT_FILE).expanduser()
    if p.is_dir():
        p = p / PROJECT_FILE
    return p


def load(path: str | Path | None = None, overrides: list[str] | Mapping[str, object] | None = None) -> Config:
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

"""The types of what osd writes down for people and other tools.

A value that osd itself reads to compute or report a number is a typed record (a frozen dataclass:
:mod:`osd.records`, the steps' results, :class:`osd.artifacts.Provenance`). What is left as a
mapping is a *document*: a metrics.json section, ``--json`` output, a model card, the TOML
settings. Its type says what it can hold: JSON values, nothing else (no arrays, no estimators, no
NaN-bearing numpy scalars: :func:`osd.artifacts.plain` makes a payload one). ``dict[str, Any]``
is kept for the cached artifacts' payloads, which hold arrays and fitted estimators.
"""

from __future__ import annotations

from typing import TypeAlias, Union

#: a JSON value (what :func:`json.dumps` writes without a default)
Json: TypeAlias = Union[None, bool, int, float, str, list["Json"], tuple["Json", ...], dict[str, "Json"]]
#: a JSON object: a metrics.json section, a ``--json`` answer, a model card
JsonObject: TypeAlias = dict[str, Json]
#: a value a setting of osd.toml can take (a TOML scalar or a list of them), keyed by its dotted name
Setting: TypeAlias = Union[None, bool, int, float, str, list[str], list[int], list[float], tuple[str, ...],
                           tuple[int, ...], tuple[float, ...]]
Settings: TypeAlias = dict[str, Setting]

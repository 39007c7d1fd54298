"""The Python API's arguments, checked at the door (as scikit-learn's ``_param_validation`` checks an
estimator's): one rule per argument name, applied by :func:`checked` to every method of
:class:`osd.Project` before any work; a wrong value is one :class:`~osd.errors.ConfigError` that names
the method and the argument, never a TypeError or AttributeError from deep inside."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from osd.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(where: str, name: str, value: Any, want: str) -> ConfigError:
    return ConfigError(f"{where}({name}={value!r}): {want}")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _split(where: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, name, value, "a split's name, e.g. 'a' (osd.toml's [splits.<name>])")
    return value


def _splits(where: str, name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [s for s in value.split(",") if s.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in value):
        raise _fail(where, name, value, "a list of split names, e.g. ['a', 'c']")
    return list(value)


def _seeds(where: str, name: str, value: Any) -> list[int] | None:
    if value is None:
        return None
    if _integer(value) is not None:
        value = [value]
    if not isinstance(value, (list, tuple)) or any(_integer(s) is None or _integer(s) < 0 for s in value):
        raise _fail(where, name, value, "a list of seeds, non-negative integers, e.g. [0, 1]")
    return [int(_integer(s)) for s in value]


def _acceptance(where: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise _fail(where, name, value, "a number above 0 and below 1, e.g. 0.99")
    return float(value)


def _count(low: int, optional: bool = False) -> Callable[[str, str, Any], int | None]:
    def rule(where: str, name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        n = _integer(value)
        if n is None or n < low:
            raise _fail(where, name, value, f"an integer of at least {low}")
        return n

    return rule


def _flag(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, name, value, "True or False")
    return value


def _rate(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)) or value < 100:
        raise _fail(where, name, value, "a number of images of at least 100, e.g. 10000")
    return float(value)


def _column(where: str, name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _fail(where, name, value, "a column name of the rows, 'folder', or None")
    return value


RULES: dict[str, Callable[[str, str, Any], Any]] = {
    "false_alarm_every": _rate, "variant_column": _column,
    "split": _split, "splits": _splits, "seeds": _seeds, "acceptance": _acceptance, "force": _flag,
    "window": _count(5, optional=True), "max_groups": _count(2), "batch_size": _count(1), "jobs": _count(1),
}


def checked(fn: F) -> F:
    """``fn``'s arguments checked (and plainly coerced: one seed to a list) by :data:`RULES` before it runs."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{fn.__name__}: {exc}") from None
        for name, value in list(bound.arguments.items()):
            if name in RULES:
                bound.arguments[name] = RULES[name](fn.__name__, name, value)
        return fn(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]


def settings_arg(settings: Any) -> Mapping[str, object] | list[str] | None:
    """``Project(settings=...)``: dotted keys with values, or ``KEY=VALUE`` strings (one string is one setting)."""
    if settings is None or isinstance(settings, Mapping):
        return settings
    if isinstance(settings, str):
        return [settings]
    if isinstance(settings, (list, tuple)) and all(isinstance(s, str) for s in settings):
        return list(settings)
    raise ConfigError(f"Project(settings={settings!r}): dotted keys with values ({{'classifier.epochs': 6}}) or "
                      "'KEY=VALUE' strings")

"""Settings as a plain frozen dataclass: ``VIGIL_*`` environment over a TOML file, without pydantic.

The edge agent's settings (``edge_agent.settings.EdgeSettings``) use this instead of
:class:`rpm_core.settings.VigilSettings`, so the agent process never loads pydantic or
pydantic-settings (docs/performance.md, "Edge agent"). The rules are those of
:func:`rpm_core.settings.load_settings`: precedence, highest first, explicit overrides (None is
ignored), ``VIGIL_<NAME>`` environment variables (the name in any case), top-level keys of the TOML
file (``config_file`` or ``VIGIL_CONFIG``; unknown keys are ignored), the defaults. Text from the
environment (or from the file) is converted as pydantic did: ``"30"`` to an int or a float, an
integral float to an int, a path from text, a JSON array for a tuple of tables. A bad value raises
:class:`~rpm_core.errors.ConfigError` naming every offending setting with the kind of error
(``invalid settings: broker_port (less_than), log_level (literal_error)``), never the value.

Declare a field's limits and extra check with :func:`setting`; the dataclass calls
:func:`check_settings` from ``__post_init__`` so a settings object is valid however it was built.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from rpm_core.errors import ConfigError, ContractError, InvalidField

__all__ = ["check_settings", "load_plain_settings", "setting"]

CONFIG_ENV: Final = "VIGIL_CONFIG"
_PREFIX: Final = "VIGIL_"
S = TypeVar("S")


def setting(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    check: Callable[[Any], Any] | None = None,
) -> Any:
    """A field with a default, numeric limits and an extra check (``check(value)`` returns the value
    to keep or raises ``ValueError``/``ContractError``: reported as ``value_error``)."""
    limits = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, metadata={"limits": limits, "check": check})


class _Bad(Exception):
    def __init__(self, loc: str, code: str) -> None:
        super().__init__(loc, code)
        self.loc = loc
        self.code = code


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _int(v: object, loc: str, lax: bool) -> int:
    if isinstance(v, bool):
        raise _Bad(loc, "int_type")
    if isinstance(v, int):
        return v
    if lax and isinstance(v, float):
        if not v.is_integer():
            raise _Bad(loc, "int_from_float")
        return int(v)
    if lax and isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise _Bad(loc, "int_parsing") from None
    raise _Bad(loc, "int_type")


def _float(v: object, loc: str, lax: bool) -> float:
    if isinstance(v, bool):
        raise _Bad(loc, "float_type")
    if isinstance(v, int | float):
        try:
            f = float(v)
        except OverflowError:
            raise _Bad(loc, "finite_number") from None
    elif lax and isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            raise _Bad(loc, "float_parsing") from None
    else:
        raise _Bad(loc, "float_type")
    if not math.isfinite(f):
        raise _Bad(loc, "finite_number")
    return f


def _optional(hint: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return None


def _records(item: Any, v: object, loc: str) -> tuple[Any, ...]:
    """A tuple of records (``[[devices]]`` tables): instances, or maps given to ``item.from_doc``."""
    if not isinstance(v, list | tuple):
        raise _Bad(loc, "tuple_type")
    out = []
    for i, x in enumerate(v):
        if isinstance(x, item):
            out.append(x)
        elif isinstance(x, Mapping) and hasattr(item, "from_doc"):
            try:
                out.append(item.from_doc(x, at=f"{loc}.{i}."))
            except InvalidField as exc:
                raise _Bad(exc.field, exc.code) from None
        else:
            raise _Bad(f"{loc}.{i}", "model_type")
    return tuple(out)


def _text(v: object, loc: str) -> str:
    if not isinstance(v, str):
        raise _Bad(loc, "string_type")
    return v


def _path(v: object, loc: str, lax: bool) -> Path:
    if isinstance(v, Path):
        return v
    if lax and isinstance(v, str):
        return Path(v)
    raise _Bad(loc, "path_type")


_SCALARS: Final[dict[Any, Callable[[object, str, bool], Any]]] = {
    int: _int,
    float: _float,
    str: lambda v, loc, _lax: _text(v, loc),
    Path: _path,
}


def _value(hint: Any, v: object, loc: str, lax: bool) -> Any:
    inner = _optional(hint)
    if inner is not None:
        return None if v is None else _value(inner, v, loc, lax)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        if not isinstance(v, str) or v not in typing.get_args(hint):
            raise _Bad(loc, "literal_error")
        return v
    if origin is tuple:
        return _records(typing.get_args(hint)[0], v, loc)
    scalar = _SCALARS.get(hint)
    if scalar is None:
        raise TypeError(f"settings field {loc}: unsupported type {hint!r}")
    return scalar(v, loc, lax)


_LIMIT_CODES: Final = {"ge": "greater_than_equal", "gt": "greater_than", "le": "less_than_equal", "lt": "less_than"}


def _field(cls: type, f: dataclasses.Field[Any], v: object, lax: bool) -> Any:
    """The checked value of one field, or :class:`_Bad`."""
    value = _value(_hints(cls)[f.name], v, f.name, lax)
    if value is not None:
        for kind, limit in f.metadata.get("limits", {}).items():
            ok = {"ge": value >= limit, "gt": value > limit, "le": value <= limit, "lt": value < limit}[kind]
            if not ok:
                raise _Bad(f.name, _LIMIT_CODES[kind])
    check = f.metadata.get("check")
    if check is not None and value is not None:
        try:
            value = check(value)
        except (ValueError, ContractError):
            raise _Bad(f.name, "value_error") from None
    return value


def _raise(errors: list[_Bad]) -> typing.NoReturn:
    raise ConfigError("invalid settings: " + ", ".join(f"{e.loc} ({e.code})" for e in errors))


def check_settings(obj: Any) -> None:
    """Check every field of the settings dataclass ``obj`` (strict types); raise :class:`ConfigError`
    naming all bad fields. Values are replaced by their checked form (a normalised address...)."""
    errors: list[_Bad] = []
    for f in dataclasses.fields(obj):
        try:
            object.__setattr__(obj, f.name, _field(type(obj), f, getattr(obj, f.name), lax=False))
        except _Bad as exc:
            errors.append(exc)
    if errors:
        _raise(errors)


def _env_value(hint: Any, text: str) -> object:
    """An environment variable's text; tables (tuples of records) come as JSON."""
    if typing.get_origin(_optional(hint) or hint) is tuple:
        return json.loads(text)
    return text


def _file_values(config_file: Path, names: set[str]) -> dict[str, object]:
    try:
        with config_file.open("rb") as fh:
            doc = tomllib.load(fh)
    except (ValueError, OSError) as exc:  # a TOML syntax error, text that is not UTF-8
        raise ConfigError(f"cannot read settings: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses per nesting level: `x = [[[[...]]]]` (catalogue 24)
        raise ConfigError("cannot read settings: nested too deeply") from exc
    return {k: v for k, v in doc.items() if k in names}


def _env_values(cls: type, names: set[str]) -> dict[str, object]:
    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(_PREFIX)}
    out: dict[str, object] = {}
    for name in names:
        text = env.get(_PREFIX + name.upper())
        if text is not None:
            try:
                out[name] = _env_value(_hints(cls)[name], text)
            except (ValueError, RecursionError) as exc:
                raise ConfigError(f"cannot read settings: {_PREFIX}{name.upper()} is not JSON") from exc
    return out


def load_plain_settings(cls: type[S], *, config_file: Path | None = None, **overrides: Any) -> S:
    """Build the settings dataclass ``cls`` from overrides, the environment and the TOML file."""
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"configuration file {config_file} does not exist")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    raw = {} if config_file is None else _file_values(config_file, names)
    raw.update(_env_values(cls, names))
    raw.update((k, v) for k, v in overrides.items() if v is not None and k in names)  # others ignored, as before
    values: dict[str, object] = {}
    errors: list[_Bad] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in raw:
            try:
                values[f.name] = _field(cls, f, raw[f.name], lax=True)
            except _Bad as exc:
                errors.append(exc)
    if errors:
        _raise(errors)
    return cls(**values)

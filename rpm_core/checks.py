"""Field checks for the contract's plain dataclasses (``Reading``, statuses, the enrollment bundle).

The contract types are frozen dataclasses that check every field in ``__post_init__`` with these
functions: no pydantic, so the edge agent does not load it (docs/performance.md, "Edge agent").
They are strict about types: an ``int`` field takes an ``int`` and not a ``bool`` or a numeric
string, a ``float`` field takes an ``int`` or a finite ``float`` (never NaN or infinity, never a
``bool``), text is ``str``, times are timezone-aware ``datetime``. Each failure raises
:class:`~rpm_core.errors.InvalidField` naming the field and why, never the value (PHI).

:func:`known_fields` refuses unknown keys of a mapping read from outside (a JSON file, a CBOR
status): what ``extra="forbid"`` did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from rpm_core.errors import InvalidField

__all__ = [
    "aware",
    "boolean",
    "fail",
    "integer",
    "iso_datetime",
    "known_fields",
    "number",
    "one_of",
    "optional_text",
    "text",
]

T = TypeVar("T")


def fail(field: str, code: str, why: str) -> NoReturn:
    raise InvalidField(field, code, why)


def _bounds(field: str, v: float, ge: float | None, gt: float | None, le: float | None, lt: float | None) -> None:
    if ge is not None and not v >= ge:
        fail(field, "greater_than_equal", f"must be at least {ge}")
    if gt is not None and not v > gt:
        fail(field, "greater_than", f"must be greater than {gt}")
    if le is not None and not v <= le:
        fail(field, "less_than_equal", f"must be at most {le}")
    if lt is not None and not v < lt:
        fail(field, "less_than", f"must be less than {lt}")


def integer(
    field: str,
    v: object,
    *,
    ge: int | None = None,
    gt: int | None = None,
    le: int | None = None,
    lt: int | None = None,
) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        fail(field, "int_type", "must be an integer")
    _bounds(field, v, ge, gt, le, lt)
    return int(v)


def number(
    field: str,
    v: object,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool):
        fail(field, "float_type", "must be a number")
    try:
        f = float(v)
    except OverflowError:
        fail(field, "finite_number", "must be a finite number")
    if not math.isfinite(f):
        fail(field, "finite_number", "must be a finite number")
    _bounds(field, f, ge, gt, le, lt)
    return f


def text(
    field: str, v: object, *, min_length: int = 0, max_length: int | None = None, pattern: re.Pattern[str] | None = None
) -> str:
    if not isinstance(v, str):
        fail(field, "string_type", "must be a text")
    if len(v) < min_length:
        fail(field, "string_too_short", f"must have at least {min_length} characters")
    if max_length is not None and len(v) > max_length:
        fail(field, "string_too_long", f"must have at most {max_length} characters")
    if pattern is not None and pattern.fullmatch(v) is None:
        fail(field, "string_pattern_mismatch", f"must match {pattern.pattern}")
    return str(v)


def optional_text(field: str, v: object, *, max_length: int | None = None) -> str | None:
    return None if v is None else text(field, v, max_length=max_length)


def boolean(field: str, v: object) -> bool:
    if not isinstance(v, bool):
        fail(field, "bool_type", "must be true or false")
    return v


def one_of(field: str, v: object, options: Collection[T]) -> T:
    if not isinstance(v, str) or v not in options:
        fail(field, "literal_error", "must be one of " + ", ".join(repr(o) for o in options))
    return v  # type: ignore[return-value]  # v is one of the options


def aware(field: str, v: object) -> datetime:
    """A timezone-aware datetime, converted to UTC."""
    if not isinstance(v, datetime):
        fail(field, "datetime_type", "must be a date and time")
    if v.tzinfo is None or v.utcoffset() is None:
        fail(field, "timezone_aware", "must carry a time zone (a naive time is ambiguous)")
    try:
        return v.astimezone(UTC)
    except OverflowError:
        fail(field, "datetime_range", "is out of range in UTC")


def iso_datetime(field: str, v: object) -> datetime:
    """A timezone-aware time from its ISO 8601 text (JSON and CBOR documents), or a datetime as is."""
    if isinstance(v, str):
        if len(v) > 64:
            fail(field, "datetime_parsing", "must be an ISO 8601 date and time")
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            fail(field, "datetime_parsing", "must be an ISO 8601 date and time")
    return aware(field, v)


def known_fields(where: str, doc: object, allowed: Iterable[str]) -> Mapping[str, Any]:
    """``doc`` as a mapping with text keys among ``allowed``; raise naming the first unknown key."""
    if not isinstance(doc, Mapping):
        fail(where or "document", "dict_type", "must be a map")
    names = frozenset(allowed)
    for key in doc:
        if not isinstance(key, str):
            fail(where or "document", "extra_forbidden", "has a key that is not text")
        if key not in names:
            shown = key if len(key) <= 40 and key.isidentifier() else "(a key)"
            fail(f"{where}.{shown}" if where else shown, "extra_forbidden", "is not a known field")
    return doc

"""Reading CBOR an agent controls: the two checks every layer of an envelope uses.

Decoding untrusted CBOR catches every exception: besides its own errors, cbor2 runs the semantic
tag decoders of the standard library (``Decimal``, ``Fraction``, ``re``, ``uuid``, ``ipaddress``,
``email``) and hashes map keys, which raise ``decimal.InvalidOperation``, ``RuntimeError`` and more
on hostile bytes. Whatever it is, those bytes are not CBOR we accept: :class:`MalformedEnvelope`
(see ``rpm_core.errors``).
"""

from __future__ import annotations

from typing import Any

import cbor2

from rpm_core.errors import MalformedEnvelope

__all__ = ["int_keys", "is_int", "loads"]


def loads(data: bytes, what: str) -> Any:
    """``data`` decoded, or :class:`MalformedEnvelope` naming ``what`` (never the bytes)."""
    try:
        return cbor2.loads(data)
    except Exception as exc:  # any decoder failure on hostile bytes (see the docstring)
        raise MalformedEnvelope(f"{what} is not CBOR") from exc


def is_int(value: object, expected: int) -> bool:
    """The CBOR integer ``expected`` exactly: True, 1.0 and cbor2's simple(1) compare equal to 1,
    and an unprotected header accepted that way was malleable (cwt refuses them)."""
    return type(value) is int and value == expected


def int_keys(header: dict[Any, Any]) -> bool:
    """Every label of ``header`` is an integer (true or 4.0 would find the same entry as 4)."""
    return all(type(k) is int for k in header)

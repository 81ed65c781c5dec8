"""The exception tree of the contract shared by edge and server.

::

    VigilError
    ├── ContractError                 data that does not meet the wire contract
    │   ├── UnknownMetric             .metric
    │   ├── ImplausibleValue          .metric .value .low .high
    │   ├── InvalidIdentifier         .kind .value
    │   ├── InvalidField              .field .code  (a field of a contract type: which, and why)
    │   └── TopicError                .topic .reason
    ├── EnvelopeError                 an envelope that must not be accepted (.reason)
    │   ├── MalformedEnvelope         not CBOR/COSE of the expected shape, or too large
    │   ├── UnsupportedVersion        .version
    │   ├── UnsupportedAlgorithm      .alg
    │   ├── UnknownKey                .kid  (never registered, rotated out or revoked)
    │   ├── DecryptionFailed          AEAD tag or key agreement failed (tampering, wrong key/AAD)
    │   ├── SignatureInvalid          the agent's signature does not verify
    │   └── BindingMismatch           .field  topic/agent bound inside differs from the outside
    └── ConfigError                   a settings or key file that cannot be used (.reason)

Every exception carries its data as attributes; callers never parse messages. ``reason`` is a
short stable code (``snake_case``) suitable for metrics labels and dead-letter rows.

Messages never format an untrusted value with ``repr()`` or ``str()``: a value that came off the
wire is named through :func:`describe`, which is bounded and cannot raise (``repr()`` of an
integer of more than 4,300 digits raises ``ValueError``; a megabyte of text would land in a
dead-letter detail or a log). Building an exception must never be what fails.

Decoding an agent's CBOR catches every exception (``except Exception``, in the server's opener:
``ingest.untrusted`` and ``ingest.rows``): besides its own errors, cbor2 runs the
semantic tag decoders of the standard library (``Decimal``, ``Fraction``, ``re``, ``uuid``,
``ipaddress``, ``email``) and hashes map keys, which raise ``decimal.InvalidOperation``,
``RuntimeError`` and more on hostile bytes. Whatever it is, those bytes are not CBOR we accept:
the caller gets :class:`MalformedEnvelope`.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "BindingMismatch",
    "ConfigError",
    "ContractError",
    "DecryptionFailed",
    "EnvelopeError",
    "ImplausibleValue",
    "InvalidField",
    "InvalidIdentifier",
    "MalformedEnvelope",
    "SignatureInvalid",
    "TopicError",
    "UnknownKey",
    "UnknownMetric",
    "UnsupportedAlgorithm",
    "UnsupportedVersion",
    "VigilError",
    "describe",
]

_SHOWN_INT: Final = 10**12
_PRINTABLE: Final = re.compile(r"[\x20-\x26\x28-\x5b\x5d-\x7e]*")  # printable ASCII but ' and \


def describe(value: object, *, limit: int = 40) -> str:
    """A short description of an untrusted value for an error message; bounded, and never raises.

    Small integers and booleans are shown (an unsupported version ``2``, an algorithm ``-7``);
    printable ASCII text of at most ``limit`` characters is shown quoted; anything else is named by
    its type and size only (``an integer of 16610 bits``, ``a text of 80000 characters``,
    ``a map of 3 entries``): no control characters, no unbounded length.
    """
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        if -_SHOWN_INT < value < _SHOWN_INT:
            return str(int(value))
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        if len(value) <= limit and _PRINTABLE.fullmatch(value) is not None:
            return f"'{value}'"
        return f"a text of {len(value)} characters"
    if isinstance(value, bytes | bytearray):
        return f"a byte string of {len(value)} bytes"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return f"a map of {len(value)} entries"
    if isinstance(value, float):
        return "a float"
    return f"a value of type {type(value).__name__[:40]}"


class VigilError(Exception):
    """Base of every Vigil exception."""

    reason: str = "error"


class ContractError(VigilError, ValueError):
    """Also a ``ValueError``: callers that catch ``ValueError`` for bad input keep working."""

    reason = "contract"


class UnknownMetric(ContractError):
    reason = "unknown_metric"

    def __init__(self, metric: str) -> None:
        super().__init__(f"unknown metric {describe(metric)}")
        self.metric = metric


class ImplausibleValue(ContractError):
    reason = "implausible_value"

    def __init__(self, metric: str, value: float, low: float, high: float) -> None:
        # The value itself is PHI: keep it as data, not in the message that may reach a log.
        super().__init__(f"{metric} value outside the plausible range [{low}, {high}]")
        self.metric = metric
        self.value = value
        self.low = low
        self.high = high


class InvalidIdentifier(ContractError):
    reason = "invalid_identifier"

    def __init__(self, kind: str, value: object) -> None:
        super().__init__(f"invalid {kind} id {describe(value, limit=80)}")
        self.kind = kind
        self.value = value


class InvalidField(ContractError):
    """A field of a contract type (a reading, a status, a bundle, a setting) that is refused.

    ``field`` is where (``seq``, ``devices.0.battery_pct``), ``code`` a short stable kind (the names
    pydantic used: ``int_type``, ``greater_than_equal``, ``string_too_long``, ``extra_forbidden``
    ...) and ``why`` a sentence; none of them carries the value (it may be PHI).
    """

    reason = "invalid_field"

    def __init__(self, field: str, code: str, why: str) -> None:
        super().__init__(f"{field[:80]}: {why[:200]}")
        self.field = field
        self.code = code
        self.why = why


class TopicError(ContractError):
    reason = "bad_topic"

    def __init__(self, topic: str, why: str) -> None:
        super().__init__(f"topic {describe(topic, limit=200)}: {why[:200]}")
        self.topic = topic
        self.why = why


class EnvelopeError(VigilError):
    reason = "envelope"


class MalformedEnvelope(EnvelopeError):
    reason = "malformed"

    def __init__(self, why: str) -> None:
        super().__init__(f"malformed envelope: {why[:200]}")
        self.why = why


class UnsupportedVersion(EnvelopeError):
    reason = "unsupported_version"

    def __init__(self, version: object) -> None:
        super().__init__(f"unsupported envelope version {describe(version)}")
        self.version = version


class UnsupportedAlgorithm(EnvelopeError):
    reason = "unsupported_algorithm"

    def __init__(self, alg: object) -> None:
        super().__init__(f"unsupported algorithm {describe(alg)}")
        self.alg = alg


class UnknownKey(EnvelopeError):
    reason = "unknown_key"

    def __init__(self, kid: str) -> None:
        super().__init__(f"unknown, rotated-out or revoked key id {describe(kid)}")
        self.kid = kid


class DecryptionFailed(EnvelopeError):
    reason = "decryption_failed"

    def __init__(self) -> None:
        super().__init__("envelope does not decrypt (tampered, wrong key or wrong topic)")


class SignatureInvalid(EnvelopeError):
    reason = "bad_signature"

    def __init__(self) -> None:
        super().__init__("agent signature does not verify")


class BindingMismatch(EnvelopeError):
    reason = "binding_mismatch"

    def __init__(self, field: str) -> None:
        super().__init__(f"the {field[:40]} bound inside the envelope differs from the one it arrived with")
        self.field = field


class ConfigError(VigilError):
    reason = "config"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

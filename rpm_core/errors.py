"""The exception tree of the contract shared by edge and server.

::

    VigilError
    ├── ContractError                 data that does not meet the wire contract
    │   ├── UnknownMetric             .metric
    │   ├── ImplausibleValue          .metric .value .low .high
    │   ├── InvalidIdentifier         .kind .value
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
"""

from __future__ import annotations

__all__ = [
    "BindingMismatch",
    "ConfigError",
    "ContractError",
    "DecryptionFailed",
    "EnvelopeError",
    "ImplausibleValue",
    "InvalidIdentifier",
    "MalformedEnvelope",
    "SignatureInvalid",
    "TopicError",
    "UnknownKey",
    "UnknownMetric",
    "UnsupportedAlgorithm",
    "UnsupportedVersion",
    "VigilError",
]


class VigilError(Exception):
    """Base of every Vigil exception."""

    reason: str = "error"


class ContractError(VigilError, ValueError):
    """Also a ``ValueError`` so that pydantic validators report it as a validation error."""

    reason = "contract"


class UnknownMetric(ContractError):
    reason = "unknown_metric"

    def __init__(self, metric: str) -> None:
        super().__init__(f"unknown metric {metric!r}")
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

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"invalid {kind} id {value[:80]!r}")
        self.kind = kind
        self.value = value


class TopicError(ContractError):
    reason = "bad_topic"

    def __init__(self, topic: str, why: str) -> None:
        super().__init__(f"topic {topic[:200]!r}: {why}")
        self.topic = topic
        self.why = why


class EnvelopeError(VigilError):
    reason = "envelope"


class MalformedEnvelope(EnvelopeError):
    reason = "malformed"

    def __init__(self, why: str) -> None:
        super().__init__(f"malformed envelope: {why}")
        self.why = why


class UnsupportedVersion(EnvelopeError):
    reason = "unsupported_version"

    def __init__(self, version: object) -> None:
        super().__init__(f"unsupported envelope version {version!r}")
        self.version = version


class UnsupportedAlgorithm(EnvelopeError):
    reason = "unsupported_algorithm"

    def __init__(self, alg: object) -> None:
        super().__init__(f"unsupported algorithm {alg!r}")
        self.alg = alg


class UnknownKey(EnvelopeError):
    reason = "unknown_key"

    def __init__(self, kid: str) -> None:
        super().__init__(f"unknown, rotated-out or revoked key id {kid!r}")
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
        super().__init__(f"the {field} bound inside the envelope differs from the one it arrived with")
        self.field = field


class ConfigError(VigilError):
    reason = "config"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

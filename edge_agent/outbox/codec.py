"""How a reading is stored in the outbox: compact CBOR, sealed with ChaCha20-Poly1305 (pure, no I/O).

The AEAD is RFC 8439's ChaCha20-Poly1305 (libsodium's ``_ietf`` variant through PyNaCl's bindings;
rows written before by ``cryptography``'s ``ChaCha20Poly1305`` are the same bytes and open unchanged).

A row's ``sealed`` column is ``nonce (12 random bytes) || ciphertext || tag (16)``. The associated
data binds the row to its place: ``b"vigil-outbox/1" || agent id || 0x00 || seq (8 bytes, big
endian)``, so a row copied to another sequence number or another agent's outbox fails to open.

The plaintext is the CBOR array (canonical encoding, so floats take their shortest exact form)::

    [device symbol, metric symbol, value, measured_at - queued_at (microseconds),
     device_time (text) or null, [flag symbols]]

Symbols are small integers standing for repeated strings (device ids, metric names, flags); the
``symbols`` table stores each string sealed the same way (associated data ``symbol`` + id) and
looked up by a keyed tag (HMAC-SHA256 of the string, 16 bytes), so no string is stored in clear.
Interning keeps a typical live reading near 40 bytes sealed, which is what makes a week of
offline buffering fit the 200 MB budget.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import cbor2
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt, crypto_aead_chacha20poly1305_ietf_encrypt
from nacl.exceptions import CryptoError

from edge_agent.errors import OutboxCorrupt
from rpm_core.ids import AgentId, DeviceId
from rpm_core.reading import Reading

__all__ = ["RowCipher", "decode_reading", "encode_reading"]

_NONCE: Final = 12
_TAG: Final = 16
_DOMAIN: Final = b"vigil-outbox/1"
_KEY_CHECK: Final = b"vigil outbox key check"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class RowCipher:
    """Seals and opens outbox rows of one agent with its outbox key."""

    def __init__(self, key: bytes, agent: AgentId) -> None:
        if len(key) != 32:
            raise ValueError("the outbox key is 32 bytes")
        self._key = key
        self._tag_key = hashlib.sha256(b"vigil-outbox-symbol-tag" + key).digest()
        self._prefix = _DOMAIN + agent.encode() + b"\x00"

    def _aad(self, kind: bytes, number: int) -> bytes:
        return self._prefix + kind + number.to_bytes(8, "big", signed=False)

    def seal(self, seq: int, plaintext: bytes, *, kind: bytes = b"r") -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        sealed: bytes = crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, self._aad(kind, seq), nonce, self._key)
        return nonce + sealed

    def open(self, seq: int, sealed: bytes, *, kind: bytes = b"r") -> bytes:
        if len(sealed) < _NONCE + _TAG:
            raise OutboxCorrupt("row is too short", seq=seq)
        try:
            plaintext: bytes = crypto_aead_chacha20poly1305_ietf_decrypt(
                sealed[_NONCE:], self._aad(kind, seq), sealed[:_NONCE], self._key
            )
        except CryptoError as exc:
            raise OutboxCorrupt("row does not authenticate", seq=seq) from exc
        return plaintext

    def tag(self, text: str) -> bytes:
        """The lookup key of a symbol: equal strings give equal tags, the tag reveals nothing."""
        return hmac.new(self._tag_key, text.encode(), hashlib.sha256).digest()[:16]

    def key_check(self) -> bytes:
        return self.seal(0, _KEY_CHECK, kind=b"k")

    def verify_key_check(self, sealed: bytes) -> bool:
        try:
            return self.open(0, sealed, kind=b"k") == _KEY_CHECK
        except OutboxCorrupt:
            return False


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def encode_reading(reading: Reading, *, queued_at_ms: int, symbol: Callable[[str], int]) -> bytes:
    """The plaintext of ``reading`` (its agent and seq are the row's, not part of the payload)."""
    row = [
        symbol(reading.device_id),
        symbol(reading.metric),
        reading.value,
        _micros(reading.measured_at) - queued_at_ms * 1000,
        reading.device_time,
        [symbol(f) for f in sorted(reading.flags)],
    ]
    return cbor2.dumps(row, canonical=True)


def decode_reading(
    plaintext: bytes, *, agent: AgentId, seq: int, queued_at_ms: int, text: Callable[[int], str]
) -> Reading:
    try:
        device, metric, value, delta, device_time, flags = cbor2.loads(plaintext)
        reading = Reading(
            agent_id=agent,
            device_id=DeviceId(text(device)),
            seq=seq,
            metric=text(metric),
            value=value,
            measured_at=_EPOCH + timedelta(microseconds=queued_at_ms * 1000 + int(delta)),
            device_time=device_time,
            flags=frozenset(text(f) for f in flags),
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, KeyError, OverflowError) as exc:
        # Reading's ContractError is a ValueError, and its message never carries a value.
        raise OutboxCorrupt("row does not decode", seq=seq) from exc
    return reading

"""Encryption at rest: rows are bound to their agent and sequence number; symbols never leak."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from edge_agent.errors import OutboxCorrupt
from edge_agent.outbox.codec import RowCipher, decode_reading, encode_reading
from rpm_core.ids import agent_id
from tests.edge_agent.outbox.conftest import AGENT, reading

KEY = secrets.token_bytes(32)


def test_reading_round_trips_compactly() -> None:
    symbols: dict[str, int] = {}
    r = reading(3)
    plain = encode_reading(r, queued_at_ms=1_772_352_000_000, symbol=lambda t: symbols.setdefault(t, len(symbols) + 1))
    assert len(plain) < 20  # interned strings, float16 value, small time delta
    texts = {v: k for k, v in symbols.items()}
    back = decode_reading(plain, agent=AGENT, seq=7, queued_at_ms=1_772_352_000_000, text=texts.__getitem__)
    assert back == dataclasses.replace(r, seq=7)


def test_rows_are_bound_to_sequence_agent_and_key() -> None:
    cipher = RowCipher(KEY, AGENT)
    sealed = cipher.seal(5, b"payload")
    assert cipher.open(5, sealed) == b"payload"
    for opener, seq in (
        (cipher, 6),
        (RowCipher(KEY, agent_id("agt-other")), 5),
        (RowCipher(secrets.token_bytes(32), AGENT), 5),
    ):
        with pytest.raises(OutboxCorrupt):
            opener.open(seq, sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(OutboxCorrupt):
        cipher.open(5, bytes(tampered))
    assert cipher.seal(5, b"payload") != sealed  # fresh nonce every time


def test_key_check_and_tags() -> None:
    cipher = RowCipher(KEY, AGENT)
    assert cipher.verify_key_check(cipher.key_check())
    assert not RowCipher(secrets.token_bytes(32), AGENT).verify_key_check(cipher.key_check())
    assert cipher.tag("spo2") == cipher.tag("spo2") != cipher.tag("heart_rate")
    assert b"spo2" not in cipher.tag("spo2")

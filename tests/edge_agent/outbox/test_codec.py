"""Encryption at rest: rows are bound to their agent and sequence number; symbols never leak."""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from edge_agent.errors import OutboxCorrupt, OutboxKeyMismatch
from edge_agent.outbox import SqliteOutbox
from edge_agent.outbox.codec import RowCipher, decode_reading, encode_reading
from rpm_core.clock import ManualClock
from rpm_core.ids import agent_id
from tests.edge_agent.outbox.conftest import AGENT, KID, START, reading

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


# -- compatibility with the outboxes cryptography sealed (before libsodium) ------------------------

FIXTURE = Path(__file__).with_name("outbox_sealed_by_cryptography.sql")
FIXTURE_KEY = bytes(range(32))


def test_an_outbox_sealed_by_cryptography_still_opens(tmp_path: Path) -> None:
    # The fixture is the SQL dump of an outbox written by the code before this module used
    # libsodium (cryptography's ChaCha20Poly1305, commit eb8ea72): key check, enrollment token,
    # symbols and four readings. Every sealed blob must open: a row that does not is quarantined
    # by fetch, so the test checks that nothing was.
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.executescript(FIXTURE.read_text())
    db.close()
    box = SqliteOutbox.open(path, key=FIXTURE_KEY, agent=AGENT, kid=KID, clock=ManualClock(START), max_readings=100)
    try:
        assert box.enrollment_token() == "tok-fixture-0001"
        got = box.fetch(0, 10)
        assert box.quarantined() == ()
        expected = [reading(0), reading(1), reading(2, metric="spo2", value=97.0, device="E0:00:00:00:00:02")]
        expected.append(reading(3))
        assert got == [dataclasses.replace(r, seq=seq) for seq, r in enumerate(expected, start=1)]
        assert box.append([reading(4)]) == [5]  # and the symbols it holds are found again
        assert box.fetch(4, 10) == [dataclasses.replace(reading(4), seq=5)]
    finally:
        box.close()
    with pytest.raises(OutboxKeyMismatch):
        SqliteOutbox.open(path, key=KEY, agent=AGENT, kid=KID, clock=ManualClock(START), max_readings=100)


def test_rows_are_the_bytes_cryptography_seals_and_opens() -> None:
    cipher = RowCipher(KEY, AGENT)
    aad = b"vigil-outbox/1" + AGENT.encode() + b"\x00" + b"r" + (9).to_bytes(8, "big")
    nonce = secrets.token_bytes(12)
    theirs = nonce + ChaCha20Poly1305(KEY).encrypt(nonce, b"reading", aad)
    assert cipher.open(9, theirs) == b"reading"
    ours = cipher.seal(9, b"reading")
    assert ChaCha20Poly1305(KEY).decrypt(ours[:12], ours[12:], aad) == b"reading"
    assert ours[:12] != nonce
    assert len(ours) == len(theirs)


def test_hostile_rows_are_corrupt_not_errors() -> None:
    cipher = RowCipher(KEY, AGENT)
    sealed = cipher.seal(3, b"a reading of some length")
    hostile = [b"", sealed[:12], sealed[:27], sealed + b"\x00", sealed[:-1]]
    for i in range(len(sealed)):  # every byte: nonce, ciphertext and tag
        flipped = bytearray(sealed)
        flipped[i] ^= 0x80
        hostile.append(bytes(flipped))
    for row in hostile:
        with pytest.raises(OutboxCorrupt):
            cipher.open(3, row)
    assert cipher.open(3, sealed) == b"a reading of some length"

"""The CI share of catalogue 23 and 24: every ``bench.fuzz`` target for a few hundred generated
inputs, the crashes the long runs found kept as regressions, and oversize or deeply nested
payloads refused by every parser with bounded memory (the peak of Python allocations while the
parser runs, tracemalloc; the long runs report the process's resident memory)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest

from bench.fuzz import run_hypothesis
from bench.fuzz_targets import AGENT, ORG, TARGETS, _keys
from edge_agent.config_file import read_config
from edge_agent.devices import DecodeError, decode
from edge_agent.errors import EnrollmentError
from ingest.rows import decode_batch
from ingest.settings import IngestSettings
from rpm_core.downlink import Receipt, sign_downlink, sign_receipt, verify_receipt
from rpm_core.envelope import MAX_ENVELOPE_BYTES, MAX_READINGS, seal_envelope
from rpm_core.errors import ConfigError, EnvelopeError, MalformedEnvelope
from rpm_core.settings import load_settings
from rpm_core.topics import Kind, Topic

MiB = 1024 * 1024


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_parser_survives_a_round_of_fuzzing(name: str) -> None:
    result = run_hypothesis(name, 0, seed=23, round_examples=150)
    assert result["examples"] > 0
    assert result["findings"] == []


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_is_a_valid_input(name: str) -> None:
    """Seeds the parsers accept: mutations start from inputs that reach the deepest code."""
    for seed in TARGETS[name].seeds():
        TARGETS[name].check(seed)


# -- what the long runs found ---------------------------------------------------------------------


def test_a_signed_receipt_dated_past_year_9999_is_malformed_not_an_overflow() -> None:
    """bench.fuzz, downlink target: ``at`` beyond datetime's range raised OverflowError at the agent."""
    topic, server = Topic(ORG, AGENT, Kind.RECEIPTS), _keys().server
    trusted = [server.public()]
    body = {"v": 1, "org": ORG, "agent": AGENT, "through": 42, "at": 253_402_300_800_000_000}
    with pytest.raises(MalformedEnvelope):
        verify_receipt(
            sign_downlink(cbor2.dumps(body), topic=topic, server=server), topic=topic, trusted=[server.public()]
        )
    ok = sign_receipt(Receipt(ORG, AGENT, 42, datetime(9999, 12, 31, tzinfo=UTC)), server)
    assert verify_receipt(ok, topic=topic, trusted=trusted).through == 42


def test_toml_nested_thousands_deep_is_a_config_error(tmp_path: Path) -> None:
    """bench.fuzz, config target: tomllib's recursion escaped as RecursionError."""
    path = tmp_path / "deep.toml"
    path.write_text("state_dir = " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError):
        load_settings(IngestSettings, config_file=path)
    with pytest.raises(EnrollmentError):
        read_config(path)


def test_an_agent_config_that_is_not_utf8_is_an_enrollment_error(tmp_path: Path) -> None:
    """bench.fuzz, config target: UnicodeDecodeError escaped ``read_config``."""
    path = tmp_path / "agent.toml"
    path.write_bytes(b'org = "\xff"\n')
    with pytest.raises(EnrollmentError):
        read_config(path)


# -- catalogue 24: oversize and deeply nested, bounded memory -------------------------------------


def peak_while(call: Callable[[], object], expected: type[BaseException]) -> int:
    """Bytes allocated at the peak while ``call`` runs; it must raise ``expected``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(expected):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


NESTED = b"\x81" * 100_000 + b"\x00"
CLAIMS_A_TERABYTE = b"\x5b" + (2**40).to_bytes(8, "big") + b"\x00" * 16


def sealed(body: bytes) -> bytes:
    k = _keys()
    return seal_envelope(body, topic=Topic.readings(ORG, AGENT), agent=k.agent, server=k.server.public())


HOSTILE_ENVELOPES = {
    "one byte over the limit": b"\x00" * (MAX_ENVELOPE_BYTES + 1),
    "nested 100,000 deep": NESTED,
    "a byte string claiming a terabyte": CLAIMS_A_TERABYTE,
    "an array claiming 2^40 items": b"\x9b" + (2**40).to_bytes(8, "big"),
    "signed body nested 60,000 deep": b"",  # built below (sealing takes the keys)
    "signed body with too many rows": b"",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ENVELOPES))
def test_hostile_envelopes_are_refused_with_bounded_memory(case: str) -> None:
    k = _keys()
    data = HOSTILE_ENVELOPES[case]
    if case == "signed body nested 60,000 deep":
        data = sealed(b"\x81" * 60_000 + b"\x00")
    elif case == "signed body with too many rows":
        rows = [[s, "F0:12:34:56:78:9A", "heart_rate", 60.0, 1_772_352_000_000_000, None, []] for s in range(1, 1_100)]
        data = sealed(cbor2.dumps({"v": 1, "org": ORG, "agent": AGENT, "sent": 0, "r": rows}))
    assert len(data) <= 2 * MAX_ENVELOPE_BYTES
    peak = peak_while(
        lambda: k.opener.open_batch(data, topic=Topic.readings(ORG, AGENT), agent=k.agent.public()), EnvelopeError
    )
    assert peak < 4 * MiB, f"{case}: {peak} bytes at the peak"
    assert MAX_READINGS < 1_100


@pytest.mark.parametrize("body", [NESTED, CLAIMS_A_TERABYTE, b"\xbb" + (2**40).to_bytes(8, "big")])
def test_hostile_bodies_are_refused_with_bounded_memory(body: bytes) -> None:
    peak = peak_while(lambda: decode_batch(body, topic=Topic.readings(ORG, AGENT)), MalformedEnvelope)
    assert peak < 4 * MiB


def test_oversize_and_nested_receipts_are_refused_with_bounded_memory() -> None:
    topic, trusted = Topic(ORG, AGENT, Kind.RECEIPTS), [_keys().server.public()]
    for data in (b"\xd2" + b"\x00" * (64 * 1024), NESTED[:60_000] + b"\x00", CLAIMS_A_TERABYTE):
        assert peak_while(lambda d=data: verify_receipt(d, topic=topic, trusted=trusted), EnvelopeError) < 4 * MiB


def test_oversize_gatt_payloads_are_refused_with_bounded_memory() -> None:
    payload = b"\x06\x48" + b"\xff" * MiB  # a heart rate, then a megabyte of RR intervals and junk
    assert peak_while(lambda: decode(0x2A37, payload), DecodeError) < 4 * MiB


def test_oversize_and_nested_config_files_are_refused_with_bounded_memory(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000)
    assert peak_while(lambda: load_settings(IngestSettings, config_file=deep), ConfigError) < 64 * MiB

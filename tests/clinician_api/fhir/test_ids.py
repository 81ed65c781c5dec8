"""FHIR ids: reversible, canonical, at most 64 characters, and the parsers survive any text."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinician_api.fhir import (
    InvalidFhirId,
    ReadingKey,
    device_fhir_id,
    gateway_fhir_id,
    observation_fhir_id,
    parse_device_fhir_id,
    parse_observation_fhir_id,
    parse_patient_fhir_id,
    patient_fhir_id,
)
from clinician_api.fhir.ids import FHIR_ID_MAX, battery_fhir_id, escape, unescape

from .conformance import FHIR_ID
from .strategies import AGENT_IDS, DEVICE_IDS, PATIENT_IDS, TIMES


def test_examples() -> None:
    assert patient_fhir_id("pat-3f9c2b7d1e6a") == "pat-3f9c2b7d1e6a"
    assert device_fhir_id("AA:BB:CC:DD:EE:FF") == "phd-AA.3ABB.3ACC.3ADD.3AEE.3AFF"
    assert gateway_fhir_id("agt_1") == "phg-agt.5F1"
    key = ReadingKey("agt-1", 7, datetime(2026, 1, 1, tzinfo=UTC))
    assert observation_fhir_id(key) == "rd.7.1767225600000000.agt-1"
    assert observation_fhir_id(key, "panel") == "bp.7.1767225600000000.agt-1"
    assert battery_fhir_id("AA:BB") == "bat-AA.3ABB"


@given(PATIENT_IDS)
def test_patient_ids_round_trip_or_hash(pid: str) -> None:
    fid = patient_fhir_id(pid)
    assert FHIR_ID.fullmatch(fid)
    assert parse_patient_fhir_id(fid) in (pid, None)
    if len(escape(pid)) <= FHIR_ID_MAX:
        assert parse_patient_fhir_id(fid) == pid


@given(DEVICE_IDS)
def test_device_ids_round_trip_or_hash(did: str) -> None:
    fid = device_fhir_id(did)
    assert FHIR_ID.fullmatch(fid)
    kind, back = parse_device_fhir_id(fid)
    assert kind == "phd"
    assert back in (did, None)
    assert back is not None or len(escape(did)) + 4 > FHIR_ID_MAX


@given(AGENT_IDS, st.integers(0, 2**63 - 1), TIMES, st.sampled_from(["reading", "panel"]))
def test_reading_keys_round_trip_or_hash(agent: str, seq: int, at: datetime, kind: str) -> None:
    key = ReadingKey(agent, seq, at)
    fid = observation_fhir_id(key, kind)  # type: ignore[arg-type]
    assert FHIR_ID.fullmatch(fid)
    ref = parse_observation_fhir_id(fid)
    assert ref.kind == kind
    assert ref.key in (key, None)


def test_long_ids_are_hashed_distinctly_and_flagged_irreversible() -> None:
    a, b = "x" * 100, "x" * 99 + "y"
    assert patient_fhir_id(a) != patient_fhir_id(b)
    assert len(patient_fhir_id(a)) == FHIR_ID_MAX
    assert parse_patient_fhir_id(patient_fhir_id(a)) is None
    assert parse_device_fhir_id(device_fhir_id(a)) == ("phd", None)
    assert device_fhir_id(a) != gateway_fhir_id(a)


@given(st.text())
def test_escape_is_a_bijection_on_text(text: str) -> None:
    if text:
        assert unescape(escape(text)) == text


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "A.41",  # non-canonical: ".41" is "A"
        ".3a",  # lowercase hex is not ours
        "abc.",
        ".FF",  # not UTF-8
        "a" * 65,
        "../etc/passwd",
        "phd-",
        "rd.01.5.agt",  # leading zero
        "rd.1.2",
        "rd.x.2.agt",
        "bp.1.99999999999999999999999.a",  # beyond datetime
        "Patient/1",
        "a b",
        "ü",
    ],
)
def test_hostile_ids_are_refused_with_our_error(hostile: str) -> None:
    refused = 0
    for parse in (parse_patient_fhir_id, parse_device_fhir_id, parse_observation_fhir_id):
        try:
            parse(hostile)
        except InvalidFhirId:
            refused += 1
    assert refused >= 2  # an id can be valid for at most one kind of resource


@given(st.one_of(st.text(max_size=80), st.from_regex(r"(rd|bp|phd-|phg-|bat-)[A-Za-z0-9.\-]{0,60}", fullmatch=True)))
def test_parsers_raise_only_invalid_fhir_id_and_accept_only_canonical_ids(text: str) -> None:
    """Any text: our error or an id that re-encodes to exactly the same text (one object, one id)."""
    with contextlib.suppress(InvalidFhirId):
        pid = parse_patient_fhir_id(text)
        assert pid is None or patient_fhir_id(pid) == text
    with contextlib.suppress(InvalidFhirId):
        kind, native = parse_device_fhir_id(text)
        if native is not None:
            assert (device_fhir_id if kind == "phd" else gateway_fhir_id)(native) == text
    with contextlib.suppress(InvalidFhirId):
        ref = parse_observation_fhir_id(text)
        if ref.key is not None:
            assert observation_fhir_id(ref.key, ref.kind) == text  # type: ignore[arg-type]
        if ref.device_id is not None:
            assert battery_fhir_id(ref.device_id) == text

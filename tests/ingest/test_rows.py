"""The validated fast path of the readings decoder (``ingest.rows``) accepts and rejects exactly what
``Reading`` does."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import rows
from rpm_core.errors import ContractError, MalformedEnvelope
from rpm_core.ids import agent_id
from rpm_core.metrics import CATALOGUE
from rpm_core.reading import Reading, SeqRange

AGENT = agent_id("agt-0001")
T = datetime(2026, 3, 1, tzinfo=UTC)

texts = st.one_of(
    st.sampled_from(["F0:12:34:56:78:9A", "dev_1.x", "", "a" * 128, "a" * 129, "-bad", "é", "ok\n"]),
    st.text(max_size=50),
)
seqs = st.one_of(st.integers(-3, 3), st.integers(2**63 - 3, 2**63 + 3), st.booleans(), st.floats(0, 5), st.just("7"))
metrics = st.one_of(st.sampled_from([*CATALOGUE, "nope", ""]), st.binary(max_size=3))
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=3000), st.integers(-10, 3000)
)
flag = st.one_of(
    st.sampled_from(["contact", "a:b.c-d_e", "", "UPPER", "x" * 48, "x" * 49, "sp ace"]), st.text(max_size=6)
)
flags = st.lists(st.one_of(flag, st.integers(0, 3)), max_size=18)
device_times = st.one_of(st.none(), st.text(max_size=45), st.integers(0, 3))


def outcome(row: list[object]) -> Reading | str:
    try:
        return rows.reading_from_row(AGENT, row)
    except (ContractError, MalformedEnvelope) as exc:
        return type(exc).__name__


@settings(max_examples=400, deadline=None)
@given(seqs, texts, metrics, values, st.integers(0, 10**15), device_times, flags)
def test_fast_path_equals_the_model(seq, device, metric, value, micros, device_time, flag_list) -> None:
    row = [seq, device, metric, value, micros, device_time, flag_list]
    fast = outcome(row)
    original = rows._fast_reading
    rows._fast_reading = lambda *_a: None  # the dataclass-only path
    try:
        slow = outcome(row)
    finally:
        rows._fast_reading = original
    assert fast == slow
    if isinstance(fast, Reading):
        assert dataclasses.astuple(fast) == dataclasses.astuple(slow)  # type: ignore[arg-type]
        assert fast.measured_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def test_declared_sequences_reads_rows_and_gaps_leniently() -> None:
    import cbor2

    body = cbor2.dumps({"r": [[5, "x"], ["bad"], [True, 1], [7]], "gaps": [[1, 3], [9, 8], ["a", 2]]})
    assert rows.declared_sequences(body) == [(5, 5), (7, 7), (1, 3)]
    assert rows.declared_sequences(b"\xff") == []


def test_conformance_canary_fast_construction_is_a_real_reading() -> None:
    # The fast path fills the dataclass's slots itself, skipping __post_init__: it must be a real one.
    row = [7, "F0:12", "heart_rate", 61.0, 10**12, "2026-03-01T08:30:00", ["contact"]]
    fast = rows.reading_from_row(AGENT, row)
    model = Reading(
        agent_id=AGENT,
        device_id="F0:12",
        seq=7,
        metric="heart_rate",
        value=61.0,
        measured_at=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=10**12),
        device_time="2026-03-01T08:30:00",
        flags=frozenset({"contact"}),
    )
    assert fast == model
    assert hash(fast) == hash(model)
    assert dataclasses.asdict(fast) == dataclasses.asdict(model)
    assert dataclasses.replace(fast) == model
    assert fast.key == model.key
    assert fast.unit == "/min"
    assert repr(fast) == repr(model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.seq = 8  # type: ignore[misc]  # still frozen


# One validator for the module, as an opener has one: its identifier memo fills across examples.
VALIDATOR = rows.RowsValidator()


def values_outcome(row: list[object]) -> tuple[object, ...] | str:
    try:
        return VALIDATOR.rows_values(AGENT, [row])[0]
    except (ContractError, MalformedEnvelope) as exc:
        return type(exc).__name__


@settings(max_examples=400, deadline=None)
@given(seqs, texts, metrics, values, st.integers(0, 10**15), device_times, flags)
def test_rows_values_equal_the_readings(seq, device, metric, value, micros, device_time, flag_list) -> None:
    row = [seq, device, metric, value, micros, device_time, flag_list]
    expected = outcome(row)
    for _ in range(2):  # the second time with the identifier memo filled
        got = values_outcome(list(row))
        if isinstance(expected, Reading):
            r = expected
            assert got == (r.seq, r.device_id, r.metric, r.value, r.measured_at, r.device_time, sorted(r.flags))
        else:
            assert got == expected


def test_rows_values_reject_what_the_readings_reject() -> None:
    good = [7, "F0:12", "heart_rate", 61, 10**12, None, ["b", "a", "b"]]
    assert VALIDATOR.rows_values(AGENT, [good]) == [
        (7, "F0:12", "heart_rate", 61.0, datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=10**12), None,
         ["a", "b"])
    ]  # fmt: skip
    for bad in ([*good[:3], 9999, *good[4:]], [*good[:6], ["BAD"]], good[:6], "row", [-1, *good[1:]]):
        with pytest.raises((ContractError, MalformedEnvelope)):
            VALIDATOR.rows_values(AGENT, [good, bad])
    with pytest.raises(ContractError):
        VALIDATOR.rows_values(agent_id_unchecked("Bad Agent"), [good])


def agent_id_unchecked(value: str):  # type: ignore[no-untyped-def]
    return value


def test_decode_values_matches_decode_batch() -> None:
    import cbor2

    from rpm_core.topics import Topic

    topic = Topic.readings("org1", AGENT)  # type: ignore[arg-type]
    body = cbor2.dumps(
        {
            "v": 1,
            "org": "org1",
            "agent": AGENT,
            "sent": 10**15,
            "r": [[s, "F0:12", "spo2", 97.5, 10**15 + s, None, ["contact"]] for s in range(5)],
            "gaps": [[10, 12]],
        }
    )
    batch, values = rows.decode_batch(body, topic=topic), VALIDATOR.decode_values(body, topic=topic)
    assert values.sent_at == batch.sent_at
    assert values.gaps == batch.gaps
    assert values.rows == [
        (r.seq, r.device_id, r.metric, r.value, r.measured_at, r.device_time, sorted(r.flags)) for r in batch.readings
    ]
    for broken in (b"\xff", cbor2.dumps([]), body.replace(b"spo2", b"spoX")):
        with pytest.raises(MalformedEnvelope) as a:
            rows.decode_batch(broken, topic=topic)
        with pytest.raises(MalformedEnvelope) as b:
            VALIDATOR.decode_values(broken, topic=topic)
        assert (a.value.reason, str(a.value)) == (b.value.reason, str(b.value))


def test_the_identifier_memo_is_bounded_and_forgets_nothing_it_should_check() -> None:
    small = rows.RowsValidator(memo_max=3)
    for i in range(20):
        device, flag = f"dev-{i}", f"flag_{i}"
        good = [i, device, "heart_rate", 61, 10**12, None, [flag]]
        assert small.rows_values(AGENT, [good])[0][1:3] == (device, "heart_rate")
        assert len(small._devices) <= 3
        assert len(small._flags) <= 3
        with pytest.raises((ContractError, MalformedEnvelope)):
            small.rows_values(AGENT, [[i, device, "heart_rate", 61, 10**12, None, [flag.upper()]]])


def test_a_gap_may_say_why_and_a_bad_reason_is_malformed() -> None:
    assert rows.gap_from_row([3, 5]) == SeqRange(first=3, last=5)
    assert rows.gap_from_row([7, 7, "quarantined"]) == SeqRange(first=7, last=7, reason="quarantined")
    assert rows.declared_sequences(cbor2.dumps({"gaps": [[7, 7, "quarantined"], [9, 8, "x"]]})) == [(7, 7)]
    for bad in ([7, 7, 1], [7, 7, None], [7, 7, "UPPER"], [7, 7, "x" * 33], [7, 7, ""], [7, 7, "a", "b"]):
        with pytest.raises((MalformedEnvelope, ContractError)):
            rows.gap_from_row(bad)

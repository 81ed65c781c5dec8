from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rpm_core.clock import ManualClock, SystemClock, ensure_utc
from rpm_core.errors import ContractError, ImplausibleValue, InvalidField, InvalidIdentifier, UnknownMetric
from rpm_core.reading import Reading, SeqRange

T = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def reading(**kw: object) -> Reading:
    base: dict[str, object] = {
        "agent_id": "agt-1",
        "device_id": "F0:12:34:56:78:9A",
        "seq": 1,
        "metric": "spo2",
        "value": 97.0,
        "measured_at": T,
    }
    base.update(kw)
    return Reading(**base)  # type: ignore[arg-type]


def test_reading_is_frozen_and_knows_its_unit_and_key() -> None:
    r = reading()
    assert r.unit == "%"
    assert r.key == ("agt-1", 1, T)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 50.0  # type: ignore[misc]
    assert hash(r) == hash(reading())
    assert r == reading()
    assert r != reading(seq=2)


def test_times_are_normalised_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = reading(measured_at=datetime(2026, 3, 1, 10, 30, tzinfo=plus2))
    assert r.measured_at == T
    assert r.measured_at.utcoffset() == timedelta(0)


def test_naive_times_are_rejected() -> None:
    with pytest.raises(InvalidField) as err:
        reading(measured_at=datetime(2026, 3, 1, 8, 30))
    assert (err.value.field, err.value.code) == ("measured_at", "timezone_aware")


@pytest.mark.parametrize(
    ("bad", "error", "field", "code"),
    [
        ({"value": 120.0}, ImplausibleValue, None, None),
        ({"value": float("nan")}, InvalidField, "value", "finite_number"),
        ({"value": float("inf")}, InvalidField, "value", "finite_number"),
        ({"value": -float("inf")}, InvalidField, "value", "finite_number"),
        ({"value": 10**400}, InvalidField, "value", "finite_number"),
        ({"value": True}, InvalidField, "value", "float_type"),
        ({"value": "97"}, InvalidField, "value", "float_type"),
        ({"value": None}, InvalidField, "value", "float_type"),
        ({"metric": "mood"}, UnknownMetric, None, None),
        ({"metric": 5}, InvalidField, "metric", "string_type"),
        ({"seq": -1}, InvalidField, "seq", "greater_than_equal"),
        ({"seq": 2**63}, InvalidField, "seq", "less_than_equal"),
        ({"seq": True}, InvalidField, "seq", "int_type"),
        ({"seq": 1.0}, InvalidField, "seq", "int_type"),
        ({"seq": "7"}, InvalidField, "seq", "int_type"),
        ({"agent_id": "has/slash"}, InvalidIdentifier, None, None),
        ({"agent_id": 5}, InvalidIdentifier, None, None),
        ({"device_id": "x" * 129}, InvalidIdentifier, None, None),
        ({"device_id": ""}, InvalidIdentifier, None, None),
        ({"measured_at": "2026-03-01T08:30:00Z"}, InvalidField, "measured_at", "datetime_type"),
        ({"measured_at": 0}, InvalidField, "measured_at", "datetime_type"),
        ({"device_time": "x" * 41}, InvalidField, "device_time", "string_too_long"),
        ({"device_time": 5}, InvalidField, "device_time", "string_type"),
        ({"flags": frozenset({"Bad Flag"})}, InvalidField, "flags", "string_pattern_mismatch"),
        ({"flags": frozenset({""})}, InvalidField, "flags", "string_pattern_mismatch"),
        ({"flags": frozenset({"x" * 49})}, InvalidField, "flags", "string_pattern_mismatch"),
        ({"flags": frozenset({1})}, InvalidField, "flags", "string_pattern_mismatch"),
        ({"flags": frozenset(f"f{i}" for i in range(17))}, InvalidField, "flags", "too_long"),
        ({"flags": "contact"}, InvalidField, "flags", "frozen_set_type"),
    ],
)
def test_invalid_readings_are_rejected_without_echoing_the_value(
    bad: dict[str, object], error: type[ContractError], field: str | None, code: str | None
) -> None:
    with pytest.raises(error) as err:
        reading(**bad)
    assert isinstance(err.value, ValueError)  # callers that catch ValueError keep working
    if isinstance(err.value, InvalidField):
        assert (err.value.field, err.value.code) == (field, code)
        assert str(err.value).startswith(f"{field}: ")
    assert "120" not in str(err.value)


def test_unknown_fields_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        reading(unexpected=1)


def test_flags_dedupe_and_ints_become_floats() -> None:
    r = reading(flags=["contact", "contact"], value=97)
    assert r.flags == frozenset({"contact"})
    assert type(r.value) is float
    assert reading(flags=frozenset(f"f{i}" for i in range(16))).flags


def test_replace_checks_again() -> None:
    with pytest.raises(InvalidField):
        dataclasses.replace(reading(), seq=-1)
    assert dataclasses.replace(reading(), seq=9).seq == 9


def test_gap_range_must_be_ordered_and_well_formed() -> None:
    assert SeqRange(first=3, last=5).last == 5
    assert SeqRange(first=3, last=3, reason="quarantined").reason == "quarantined"
    for bad, field, code in [
        ({"first": 5, "last": 3}, "last", "value_error"),
        ({"first": -1, "last": 3}, "first", "greater_than_equal"),
        ({"first": 0, "last": 2**63}, "last", "less_than_equal"),
        ({"first": True, "last": 3}, "first", "int_type"),
        ({"first": 0, "last": 3, "reason": "UPPER"}, "reason", "string_pattern_mismatch"),
        ({"first": 0, "last": 3, "reason": ""}, "reason", "string_too_short"),
        ({"first": 0, "last": 3, "reason": "x" * 33}, "reason", "string_too_long"),
        ({"first": 0, "last": 3, "reason": 1}, "reason", "string_type"),
    ]:
        with pytest.raises(InvalidField) as err:
            SeqRange(**bad)  # type: ignore[arg-type]
        assert (err.value.field, err.value.code) == (field, code)


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(T)
    clock.advance(90)
    assert clock.now() == T + timedelta(seconds=90)
    assert clock.monotonic() == 90
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(T)


def test_system_clock_is_utc_aware() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        ensure_utc(datetime(2026, 1, 1))

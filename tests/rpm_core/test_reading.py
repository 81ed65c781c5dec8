from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from rpm_core.clock import ManualClock, SystemClock, ensure_utc
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
    with pytest.raises(ValidationError):
        r.value = 50.0  # type: ignore[misc]


def test_times_are_normalised_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = reading(measured_at=datetime(2026, 3, 1, 10, 30, tzinfo=plus2))
    assert r.measured_at == T
    assert r.measured_at.utcoffset() == timedelta(0)


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValidationError):
        reading(measured_at=datetime(2026, 3, 1, 8, 30))


@pytest.mark.parametrize(
    "bad",
    [
        {"value": 120.0},
        {"value": float("nan")},
        {"metric": "mood"},
        {"seq": -1},
        {"agent_id": "has/slash"},
        {"flags": frozenset({"Bad Flag"})},
        {"unexpected": 1},
    ],
)
def test_invalid_readings_are_rejected_without_echoing_the_value(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as err:
        reading(**bad)
    if "value" in bad:
        assert "120" not in str(err.value)


def test_gap_range_must_be_ordered() -> None:
    assert SeqRange(first=3, last=5).last == 5
    with pytest.raises(ValidationError):
        SeqRange(first=5, last=3)


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

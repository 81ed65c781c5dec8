from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.devices.battery import BatteryLevel
from edge_agent.devices.errors import DecodeError, InvalidMeasurement


def test_battery_level() -> None:
    level = BatteryLevel.from_bytes(b"\x64")
    assert level == BatteryLevel(100)
    assert level.percent == 100
    assert level.readings() == []  # device status, not a patient reading
    assert bytes(level) == b"\x64"


@pytest.mark.parametrize(
    ("payload", "reason"), [(b"", "truncated"), (b"\x65", "reserved_value"), (b"\xff", "reserved_value")]
)
def test_bad_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        BatteryLevel.from_bytes(payload)
    assert (caught.value.reason, caught.value.characteristic) == (reason, 0x2A19)


def test_trailing_bytes() -> None:
    with pytest.raises(DecodeError) as caught:
        BatteryLevel.from_bytes(b"\x10\x00")
    assert caught.value.reason == "trailing_bytes"


def test_construction_is_validated() -> None:
    with pytest.raises(InvalidMeasurement):
        BatteryLevel(-1)


@given(st.integers(0, 100))
def test_round_trip(percent: int) -> None:
    assert BatteryLevel.from_bytes(bytes(BatteryLevel(percent))) == BatteryLevel(percent)

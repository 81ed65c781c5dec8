"""Decoded values to contract readings: implausible and absent values are dropped and counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from edge_agent.convert import to_readings
from edge_agent.devices import decode
from edge_agent.timefix import DeviceClock
from rpm_core.ids import agent_id, device_id

AGENT, DEVICE = agent_id("agt-1"), device_id("E0:00:00:00:00:01")
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def convert(char: int, hex_payload: str, clock: DeviceClock | None = None):
    return to_readings(
        decode(char, bytes.fromhex(hex_payload)),
        agent=AGENT,
        device=DEVICE,
        received_at=NOW,
        zone=UTC_ZONE,
        clock=clock,
    )


def test_heart_rate_vector_keeps_hr_and_drops_the_implausible_rr_interval() -> None:
    # Nordic vector: 85 bpm and one RR interval of 33/1024 s = 32 ms (below the 100 ms floor).
    readings, dropped = convert(0x2A37, "1E5532002100")
    assert [(r.metric, r.value, r.measured_at, r.seq) for r in readings] == [("heart_rate", 85.0, NOW, 0)]
    assert r_flags(readings) == {"sensor_contact:detected"}
    assert dropped == ["implausible"]


def r_flags(readings):
    return set().union(*(r.flags for r in readings))


def test_no_skin_contact_and_special_values_never_become_readings() -> None:
    assert convert(0x2A37, "0455") == ([], [])  # contact supported but not detected: no reading
    # PLX continuous with SpO2 = NaN (0x07FF) and PR 90: one reading, one absent value.
    readings, dropped = convert(0x2A5F, "00FF075A00")
    assert [(r.metric, r.value) for r in readings] == [("heart_rate", 90.0)]
    assert dropped == ["absent_value"]
    # SpO2 120 %: implausible.
    readings, dropped = convert(0x2A5F, "0078005A00")
    assert [r.metric for r in readings] == ["heart_rate"]
    assert dropped == ["implausible"]


def test_device_time_and_clock_skew_flag() -> None:
    # Thermometer vector: 37.60 Cel at 2012-12-05 11:50:27 device time.
    readings, _ = convert(0x2A1C, "06B00E00FEDC070C050B321B04")
    assert readings[0].measured_at == datetime(2012, 12, 5, 11, 50, 27, tzinfo=UTC)
    assert readings[0].device_time == "2012-12-05T11:50:27"
    skewed = DeviceClock(skew=timedelta(hours=-1), threshold=timedelta(minutes=2))
    readings, _ = convert(0x2A1C, "06B00E00FEDC070C050B321B04", skewed)
    assert readings[0].measured_at == datetime(2012, 12, 5, 12, 50, 27, tzinfo=UTC)
    assert "clock_skew" in readings[0].flags

"""Blood-pressure pairing, checked against the real edge pipeline.

Cuff values are real 0x2A35 bytes decoded by edge_agent.devices, converted by
edge_agent.convert.to_readings and numbered by a real SqliteOutbox (as the BLE session does); the
rows the server would store become ReadingRecords and must group into exactly one panel per cuff
measurement.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from clinician_api.fhir import ReadingRecord, group_readings, observation
from edge_agent.convert import to_readings
from edge_agent.devices import decode
from edge_agent.devices.blood_pressure import BloodPressureMeasurement
from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.heart_rate import HeartRateMeasurement, SensorContact
from edge_agent.devices.sfloat import SFloat, Special
from edge_agent.outbox import SqliteOutbox
from rpm_core.clock import ManualClock
from rpm_core.ids import DeviceId, agent_id, device_id
from rpm_core.reading import Reading

from .conformance import validate

AGENT = agent_id("agt-cuff")
CUFF = device_id("C0:FF:EE:00:00:01")
STRAP = device_id("C0:FF:EE:00:00:02")
ZONE = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def cuff(sys: SFloat, dia: SFloat, mean: SFloat, minute: int, *, pulse: int | None = 70, status: int | None = None):
    return BloodPressureMeasurement(
        sys,
        dia,
        mean,
        timestamp=DateTime(2026, 3, 1, 9, minute, 0),
        pulse_rate=None if pulse is None else SFloat.of(pulse),
        status=status,
    )


def stored(tmp_path: Path, values: list[tuple[DeviceId, int, bytes]]) -> list[ReadingRecord]:
    """Each (device, characteristic, payload) decoded, converted and appended like the BLE session."""
    clock = ManualClock(NOW)
    key = secrets.token_bytes(32)
    path = tmp_path / "outbox.db"
    SqliteOutbox.create(path, key=key, agent=AGENT, kid="0123456789abcdef", clock=clock)
    box = SqliteOutbox.open(path, key=key, agent=AGENT, kid="0123456789abcdef", clock=clock, max_readings=1000)
    try:
        for device, characteristic, payload in values:
            readings, _ = to_readings(
                decode(characteristic, payload), agent=AGENT, device=device, received_at=NOW, zone=ZONE, clock=None
            )
            box.append(readings)
        rows: list[Reading] = box.fetch(0, 1000)
    finally:
        box.close()
    return [
        ReadingRecord(
            "pat-1",
            "org1",
            r.agent_id,
            r.device_id,
            r.seq,
            r.metric,
            r.value,
            r.unit,
            r.measured_at,
            received_at=NOW,
            device_time=r.device_time,
            flags=sorted(r.flags),
        )
        for r in rows
    ]


def test_one_panel_per_cuff_measurement_from_the_real_edge_pipeline(tmp_path: Path) -> None:
    nan = SFloat(special=Special.NAN)
    values = [
        (CUFF, 0x2A35, bytes(cuff(SFloat.of(121), SFloat.of(79), SFloat.of(93), 0, status=0b100))),
        (STRAP, 0x2A37, bytes(HeartRateMeasurement(66, SensorContact.DETECTED))),
        (CUFF, 0x2A35, bytes(cuff(SFloat.of(130), nan, SFloat.of(99), 5, pulse=None))),  # diastolic NaN: dropped
        (CUFF, 0x2A35, bytes(cuff(SFloat.of(118), SFloat.of(77), nan, 5))),  # same device time, MAP dropped
    ]
    records = stored(tmp_path, values)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    ordered = sorted(records, key=lambda r: (r.measured_at, r.agent_id, r.seq))
    groups = list(group_readings(ordered))
    shapes = [tuple(r.metric for r in g) for g in groups]
    # Paris is UTC+1: the cuff's 09:00 and 09:05 are 08:00Z and 08:05Z; the strap sent no time and
    # was received at 09:00Z. Pulse rates travel as their own Observations.
    assert shapes == [
        ("bp_systolic", "bp_diastolic", "bp_mean"),
        ("heart_rate",),
        ("bp_systolic", "bp_mean"),
        ("bp_systolic", "bp_diastolic"),
        ("heart_rate",),
        ("heart_rate",),
    ]
    assert groups[-1][0].device_id == STRAP
    panels = [observation(g, device_profiles={CUFF: "blood_pressure"}) for g in groups]
    for panel in panels:
        validate(panel)
    bp = [p for p in panels if p["id"].startswith("bp.")]
    assert len(bp) == 3
    assert {"text": "Irregular pulse detected."} in bp[0]["note"]
    missing = [c for c in bp[1]["component"] if c["code"]["coding"][0]["code"] == "8462-4"]
    assert missing[0]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert len(bp[2]["component"]) == 2  # no mean: MAP was a special value


def test_grouping_is_direction_agnostic(tmp_path: Path) -> None:
    values = [(CUFF, 0x2A35, bytes(cuff(SFloat.of(120 + i), SFloat.of(80), SFloat.of(93), i))) for i in range(3)]
    records = stored(tmp_path, values)
    newest_first = sorted(records, key=lambda r: (-r.measured_at.timestamp(), r.agent_id, r.seq))
    by_metric = sorted(records, key=lambda r: (r.measured_at, r.metric))
    for stream in (newest_first, by_metric):
        groups = [g for g in group_readings(stream) if g[0].metric.startswith("bp_")]
        assert len(groups) == 3
        assert all(len(g) == 3 for g in groups)


def record(seq: int, metric: str, at: datetime, device: str = CUFF) -> ReadingRecord:
    return ReadingRecord("pat-1", "org1", AGENT, device, seq, metric, 100.0, "mm[Hg]", at)


def test_non_consecutive_or_other_device_readings_are_not_paired() -> None:
    t = NOW
    assert len(list(group_readings([record(1, "bp_systolic", t), record(3, "bp_diastolic", t)]))) == 2
    assert len(list(group_readings([record(1, "bp_systolic", t), record(2, "bp_diastolic", t, STRAP)]))) == 2
    assert (
        len(list(group_readings([record(1, "bp_systolic", t), record(2, "bp_diastolic", t + timedelta(seconds=1))])))
        == 2
    )
    assert len(list(group_readings([record(1, "bp_systolic", t), record(2, "bp_systolic", t)]))) == 2


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["bp_systolic", "bp_diastolic", "bp_mean", "spo2"])), max_size=30
    )
)
def test_groups_partition_the_stream_in_order(spec) -> None:
    stream = [
        ReadingRecord("p", "o", "a", "d", i, m, 97.0, "%" if m == "spo2" else "mm[Hg]", NOW + timedelta(minutes=t))
        for i, (t, m) in enumerate(spec)
    ]
    groups = list(group_readings(stream))
    assert [r for g in groups for r in g] == stream
    for g in groups:
        assert len({r.metric for r in g}) == len(g) <= 3

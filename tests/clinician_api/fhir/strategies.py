"""Hypothesis strategies for the FHIR mapping's records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from clinician_api.fhir import ReadingRecord
from clinician_api.fhir.codes import FLAG_EFFECTS
from rpm_core.metrics import CATALOGUE

AGENT_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True)
DEVICE_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}", fullmatch=True)
PATIENT_IDS = DEVICE_IDS
WIRE_FLAGS = st.from_regex(r"[a-z0-9_:.-]{1,48}", fullmatch=True)
FLAGS = st.lists(st.one_of(st.sampled_from(sorted(FLAG_EFFECTS)), WIRE_FLAGS), max_size=16)
TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@st.composite
def readings(draw: st.DrawFn, metric: str | None = None) -> ReadingRecord:
    name = metric or draw(st.sampled_from(sorted(CATALOGUE)))
    entry = CATALOGUE[name]
    special = draw(st.sampled_from([None, None, None, "nan", "inf", "-inf", "error"]))
    absent = None
    if special is None:
        value: float | None = draw(st.floats(min_value=entry.low, max_value=entry.high))
    elif special == "error":
        value, absent = None, "error"
    else:
        value = float(special)
    measured = draw(TIMES)
    received = draw(st.none() | st.just(measured + timedelta(seconds=draw(st.integers(0, 10**6)))))
    return ReadingRecord(
        patient_id=draw(PATIENT_IDS),
        org_id=draw(AGENT_IDS),
        agent_id=draw(AGENT_IDS),
        device_id=draw(DEVICE_IDS),
        seq=draw(st.integers(0, 2**63 - 1)),
        metric=name,
        value=value,
        unit=entry.unit,
        measured_at=measured,
        received_at=received,
        device_time=draw(st.none() | st.just(measured.replace(tzinfo=None).isoformat())),
        flags=tuple(draw(FLAGS)),
        absent_reason=absent,
    )

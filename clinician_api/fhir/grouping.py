"""Readings to Observation groups: the readings of one blood-pressure measurement travel together.

How the edge agent emits a cuff measurement (edge_agent.devices.blood_pressure and
edge_agent.ble.session): one Blood Pressure Measurement value decodes to ``bp_systolic``,
``bp_diastolic``, ``bp_mean`` and (when the cuff sent a pulse rate) ``heart_rate``, in that order,
with one shared device time and one shared set of status flags. Values the agent drops (special
values, implausible numbers) are left out *before* the outbox numbers them, and the outbox gives
the readings of one append consecutive sequence numbers in one transaction. So the pressures of one
measurement are exactly: the same agent and device, the same ``measured_at``, consecutive ``seq``,
each pressure metric at most once. That is the pairing rule here; no time window is guessed.

:func:`group_readings` works on a stream in which the readings of one measurement are adjacent,
which any order by (measured time, agent, seq), ascending or descending, gives. It holds at most
three readings at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from clinician_api.fhir.records import ReadingRecord

__all__ = ["group_readings"]

_BP: Final = frozenset({"bp_systolic", "bp_diastolic", "bp_mean"})


def _continues(group: list[ReadingRecord], reading: ReadingRecord) -> bool:
    head = group[0]
    if reading.metric not in _BP or head.metric not in _BP:
        return False
    if (reading.patient_id, reading.agent_id, reading.device_id, reading.measured_at) != (
        head.patient_id,
        head.agent_id,
        head.device_id,
        head.measured_at,
    ):
        return False
    if any(r.metric == reading.metric for r in group):
        return False
    seqs = [r.seq for r in group]
    return reading.seq in (max(seqs) + 1, min(seqs) - 1)


def group_readings(readings: Iterable[ReadingRecord]) -> Iterator[tuple[ReadingRecord, ...]]:
    """Groups in stream order: a 1-tuple per reading, one tuple per blood-pressure measurement."""
    group: list[ReadingRecord] = []
    for reading in readings:
        if group and _continues(group, reading):
            group.append(reading)
            continue
        if group:
            yield tuple(group)
        group = [reading]
    if group:
        yield tuple(group)

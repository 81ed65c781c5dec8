"""Decoded GATT values to contract readings (pure): time correction, plausibility, flags.

A decoded value becomes a :class:`rpm_core.reading.Reading` only when it is a number within the
metric's plausible range; everything else is dropped and counted by reason (the counts go into
``vigil edge status``, never the values):

* ``absent_value``: the device sent an IEEE 11073 special value (NaN, NRes, INF);
* ``implausible``: a number outside the catalogue's range (e.g. SpO2 120 %, an RR interval of 32 ms);
* ``invalid``: anything else the contract refuses.

Heart rate without skin contact and glucose control solution never get here: the decoders return
no reading for them. The ``seq`` of a returned reading is 0: the outbox assigns the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from edge_agent.devices.reading import DecodedReading
from edge_agent.timefix import CLOCK_SKEW_FLAG, DeviceClock, measured_at
from rpm_core.errors import ContractError
from rpm_core.ids import AgentId, DeviceId
from rpm_core.metrics import CATALOGUE
from rpm_core.reading import MAX_FLAGS, Reading

__all__ = ["DROP_REASONS", "to_readings"]

DROP_REASONS: Final = ("absent_value", "implausible", "invalid")


def to_readings(
    decoded: Sequence[DecodedReading],
    *,
    agent: AgentId,
    device: DeviceId,
    received_at: datetime,
    zone: ZoneInfo,
    clock: DeviceClock | None,
) -> tuple[list[Reading], list[str]]:
    """The readings to store and the drop reason of each decoded value that is not one."""
    readings: list[Reading] = []
    dropped: list[str] = []
    for item in decoded:
        if item.value is None:
            dropped.append("absent_value")
            continue
        if not CATALOGUE[item.metric].is_plausible(item.value):
            dropped.append("implausible")
            continue
        when, corrected = measured_at(item.device_time, received_at=received_at, zone=zone, clock=clock)
        flags = sorted(item.flags)
        if corrected:
            flags = [CLOCK_SKEW_FLAG, *flags]
        try:
            readings.append(
                Reading(
                    agent_id=agent,
                    device_id=device,
                    seq=0,
                    metric=item.metric,
                    value=item.value,
                    measured_at=when,
                    device_time=None if item.device_time is None else item.device_time.isoformat(),
                    flags=frozenset(flags[:MAX_FLAGS]),
                )
            )
        except ContractError:
            dropped.append("invalid")
    return readings, dropped

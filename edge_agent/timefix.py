"""Device clocks to UTC (pure).

A health device's Date Time fields are its local wall time, without a zone. The agent reads the
device's Current Time (0x2A2B) when it connects, interprets both clocks in the agent's time zone
(``time_zone`` setting), and compares with its own UTC clock:

* within ``clock_skew_threshold_s``: a measurement's device time, read in the agent's zone, is
  its UTC time (the small difference is read latency, not skew);
* beyond it: the device clock is wrong; measured times are corrected by the measured skew and the
  reading is flagged ``clock_skew`` (and the agent raises the ``clock_skew`` alarm);
* a measurement without a usable device time gets the time the agent received it.

Ambiguous or missing local times at a DST change resolve with ``fold=0`` (the earlier offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from edge_agent.devices.datetime_field import CurrentTime

__all__ = ["CLOCK_SKEW_FLAG", "DeviceClock", "local_to_utc", "measured_at"]

CLOCK_SKEW_FLAG: Final = "clock_skew"


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime | None:
    """A naive device wall time in ``zone`` as UTC; None when it cannot be represented."""
    try:
        return local.replace(tzinfo=zone).astimezone(UTC)
    except (OverflowError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class DeviceClock:
    """How far a device's clock is off (its time minus the agent's when read), in whole seconds."""

    skew: timedelta
    threshold: timedelta

    @property
    def skewed(self) -> bool:
        return abs(self.skew) > self.threshold

    @classmethod
    def measure(
        cls, current: CurrentTime, *, agent_now: datetime, zone: ZoneInfo, threshold: timedelta
    ) -> DeviceClock | None:
        """None when the device does not know its date (year, month or day unknown)."""
        local = current.to_datetime()
        device_utc = None if local is None else local_to_utc(local, zone)
        if device_utc is None:
            return None
        # Whole seconds: device timestamps have no finer resolution, and read latency is noise.
        return cls(timedelta(seconds=round((device_utc - agent_now).total_seconds())), threshold)


def measured_at(
    device_time: datetime | None, *, received_at: datetime, zone: ZoneInfo, clock: DeviceClock | None
) -> tuple[datetime, bool]:
    """The UTC time of a measurement and whether it was corrected for a skewed device clock."""
    utc = None if device_time is None else local_to_utc(device_time, zone)
    if utc is None:
        return received_at, False
    if clock is not None and clock.skewed:
        try:
            return utc - clock.skew, True
        except OverflowError:
            return received_at, False
    return utc, False

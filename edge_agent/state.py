"""What the agent knows about itself right now: devices, alarms, counters (in memory, on the loop).

BLE sessions and the uplink update it; the uplink reports it in status messages and the agent
persists it into the outbox database for ``vigil edge status``. Changes that deserve a status
message at once (a device connects, a battery level changes, an alarm is raised) bump
:attr:`AgentState.version` and wake whoever waits in :meth:`AgentState.changed`; ``last_seen``
alone does not (it is reported periodically).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from edge_agent.settings import PairedDevice
from rpm_core.clock import Clock
from rpm_core.status import ALARMS, DeviceStatus

__all__ = ["LATCH", "AgentState"]

# An alarm about an event (a takeover) stays raised this long, so a status message carries it.
LATCH: Final = timedelta(hours=1)


class AgentState:
    def __init__(self, devices: Sequence[PairedDevice], *, clock: Clock, clock_skew_threshold_s: float) -> None:
        self._clock = clock
        self._threshold = clock_skew_threshold_s
        self._devices = {d.address: DeviceStatus(device_id=d.address, profile=d.profile, name=d.name) for d in devices}
        self._alarms: dict[str, datetime | None] = {}  # name -> latched until (None: until cleared)
        self.counters: Counter[str] = Counter()
        self.broker_connected = False
        self.version = 0
        self._event = asyncio.Event()

    # -- change notification ------------------------------------------------------------------

    def _touch(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def changed(self, since: int | None = None) -> None:
        """Return at the next change, or at once if :attr:`version` has moved past ``since``."""
        if since is not None and since != self.version:
            return
        await self._event.wait()

    # -- devices ------------------------------------------------------------------------------

    def devices(self) -> tuple[DeviceStatus, ...]:
        return tuple(self._devices.values())

    def device(self, address: str) -> DeviceStatus:
        return self._devices[address]

    def update_device(self, address: str, **changes: Any) -> None:
        current = self._devices[address]
        updated = dataclasses.replace(current, **changes)  # checked again, as any DeviceStatus
        if updated != current:
            self._devices[address] = updated
            self._touch()

    def seen(self, address: str, at: datetime) -> None:
        if address in self._devices:
            self._devices[address] = dataclasses.replace(self._devices[address], last_seen=at)

    # -- alarms and counters ------------------------------------------------------------------

    def raise_alarm(self, name: str, *, latch: bool = False) -> None:
        if name not in ALARMS:
            raise ValueError(name)
        until = self._clock.now() + LATCH if latch else None
        known = name in self._alarms
        self._alarms[name] = until
        if not known:
            self._touch()

    def clear_alarm(self, name: str) -> None:
        until = self._alarms.get(name, self._clock.now())
        if name in self._alarms and (until is None or until <= self._clock.now()):
            del self._alarms[name]
            self._touch()

    @property
    def alarms(self) -> frozenset[str]:
        now = self._clock.now()
        active = {n for n, until in self._alarms.items() if until is None or until > now}
        if any(d.clock_skew_s is not None and abs(d.clock_skew_s) > self._threshold for d in self._devices.values()):
            active.add("clock_skew")
        return frozenset(active)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

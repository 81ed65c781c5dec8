"""Every paired device at once: one scanner, one supervisor per allow-listed device.

The scanner runs for the agent's lifetime and only remembers advertisements of allow-listed
addresses; anything else is ignored (never connected). A supervisor waits for its device's next
advertisement, runs a :class:`~edge_agent.ble.session.DeviceSession`, and after a failure waits
``backoff_delay(error, attempt)`` (:mod:`rpm_core.backoff`, the policy shared with MQTT) before
listening again. Continuous devices advertise whenever they are not connected, so they come back
at once; cuffs and scales advertise only after a measurement, so "reconnect on advertisement" is
exactly "connect when it has something to deliver".
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from edge_agent.ble.radio import Radio
from edge_agent.ble.session import DeviceSession, stop_if_cancelled
from edge_agent.errors import AdapterUnavailable, DeviceError
from edge_agent.settings import PairedDevice
from edge_agent.state import AgentState
from rpm_core.backoff import BackoffPolicy, backoff_delay

__all__ = ["DeviceManager"]

_log = logging.getLogger(__name__)


@dataclass
class _Slot:
    paired: PairedDevice
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    device: BLEDevice | None = None


class DeviceManager:
    def __init__(
        self,
        *,
        radio: Radio,
        devices: Sequence[PairedDevice],
        session: Callable[[PairedDevice], DeviceSession],
        state: AgentState,
        policy: BackoffPolicy,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._radio = radio
        self._slots = {d.address: _Slot(d) for d in devices}
        self._session = session
        self._state = state
        self._policy = policy
        self._rng = rng

    async def run(self) -> None:
        if not self._slots:
            _log.warning("no paired devices: pair one with `vigil edge pair`")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._scan())
            for slot in self._slots.values():
                tasks.create_task(self._supervise(slot))

    def _on_advertisement(self, device: BLEDevice, _adv: AdvertisementData) -> None:
        slot = self._slots.get(device.address.upper())
        if slot is not None:
            slot.device = device
            slot.seen.set()

    async def _scan(self) -> None:
        attempt = 0
        while True:
            try:
                scanner = self._radio.scanner(self._on_advertisement)
                try:
                    await scanner.start()
                except (BleakError, OSError) as exc:
                    raise AdapterUnavailable(type(exc).__name__) from exc
                stop_if_cancelled()
            except AdapterUnavailable as exc:
                self._state.raise_alarm("ble_adapter_down")
                delay = backoff_delay(exc, attempt, policy=self._policy, jitter=self._rng() * 0.5)
                attempt += 1
                _log.error("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._state.clear_alarm("ble_adapter_down")
            try:
                await asyncio.Event().wait()  # scan for as long as the agent runs
            finally:
                try:
                    await scanner.stop()
                except (BleakError, OSError) as exc:
                    _log.debug("stopping the scanner failed: %s", type(exc).__name__)

    async def _supervise(self, slot: _Slot) -> None:
        attempt = 0
        address = slot.paired.address
        while True:
            stop_if_cancelled()
            await slot.seen.wait()
            slot.seen.clear()
            device = slot.device
            if device is None:
                continue
            try:
                await self._session(slot.paired).run(device)
                attempt = 0
            except DeviceError as exc:
                delay = backoff_delay(exc, attempt, policy=self._policy, jitter=self._rng() * 0.5)
                attempt += 1
                stop_if_cancelled()  # the session may have ended on a link error raised while stopping
                _log.info("%s: %s; listening again in %.1f s", address, exc.reason, delay)
                await asyncio.sleep(delay)
            slot.seen.clear()  # connect on an advertisement seen after this session, not a stale one

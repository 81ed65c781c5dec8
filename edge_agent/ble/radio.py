"""The one place that builds bleak scanners and clients, and so chooses the backend.

Production passes nothing (bleak's platform default: BlueZ over D-Bus on the Pi). Tests and the demo
pass the bound backend classes of an emulated radio (``edge_agent.emulation``), which speak real
ATT/GATT through bumble; :func:`open_radio` picks between them from the settings, importing the
emulation (and bumble) only when asked, since a Pi does not install it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from edge_agent.errors import AdapterUnavailable, DeviceUnreachable
from edge_agent.settings import EdgeSettings

__all__ = ["Radio", "open_radio"]

_log = logging.getLogger(__name__)
_CONNECT_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class Radio:
    """bleak backends to use; ``None`` means the platform's own (BlueZ)."""

    scanner_backend: type[BaseBleakScanner] | None = None
    client_backend: type[BaseBleakClient] | None = None

    def scanner(self, callback: AdvertisementDataCallback) -> BleakScanner:
        try:
            return BleakScanner(callback, backend=self.scanner_backend)
        except BleakError as exc:
            raise AdapterUnavailable(type(exc).__name__) from exc

    async def connect(
        self, device: BLEDevice, *, name: str, disconnected: Callable[[BleakClient], None]
    ) -> BleakClient:
        """Connect through bleak-retry-connector; raises :class:`DeviceUnreachable`."""
        try:
            client: BleakClient = await establish_connection(
                BleakClient,
                device,
                name,
                disconnected_callback=disconnected,
                max_attempts=_CONNECT_ATTEMPTS,
                backend=self.client_backend,
            )
        except (BleakError, TimeoutError) as exc:
            raise DeviceUnreachable(device.address, type(exc).__name__) from exc
        return client


@contextlib.asynccontextmanager
async def open_radio(settings: EdgeSettings) -> AsyncIterator[Radio]:
    """The radio the settings ask for, open for the duration of the block."""
    if settings.ble_backend == "bluez":
        yield Radio()
        return
    # Only the demo and the tests get here; edge-only installs have no bumble.
    from edge_agent.emulation import EmulatedRadio

    if settings.emulated_hci is not None:
        _log.info("BLE: emulated devices of another process (%s)", settings.emulated_hci)
        radio = await EmulatedRadio.open_hci(settings.emulated_hci)
        try:
            yield Radio(radio.scanner_backend, radio.client_backend)
        finally:
            await radio.close()
        return
    from edge_agent.emulation.demo import DemoPatient, run_demo_devices

    _log.info("BLE: built-in demo devices")
    patient = DemoPatient(
        seed=settings.demo_seed,
        deteriorate_after_s=settings.demo_deteriorate_after_s,
        deteriorate_over_s=settings.demo_deteriorate_over_s,
        history_days=settings.demo_history_days,
        memory=settings.state_dir / "demo-devices.json",
    )
    async with run_demo_devices(
        speed=settings.demo_speed,
        glucose_records=settings.demo_glucose_records,
        zone=settings.zone,
        patient=patient,
        paired=settings.devices,
    ) as radio:
        yield Radio(radio.scanner_backend, radio.client_backend)

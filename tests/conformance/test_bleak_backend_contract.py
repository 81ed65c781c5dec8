"""Canary: bleak's backend contract, as the agent's one construction point (edge_agent/ble/radio.py)
and the emulated radio (edge_agent/emulation/backend.py) rely on it.

The emulated devices are reached through bleak's public ``BleakScanner``/``BleakClient`` with
``backend=`` our own ``BaseBleakScanner``/``BaseBleakClient`` subclasses, so the code path above
them is production's. An upgrade of bleak (or bleak-retry-connector) that adds an abstract method,
renames a parameter, reorders ``AdvertisementData`` or stops forwarding ``backend=`` breaks that
quietly in places; these tests say which promise broke.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak_retry_connector import establish_connection

from edge_agent.emulation.backend import BumbleClient, BumbleScanner

# What a client backend must implement, with the parameters bleak calls it with.
CLIENT_METHODS = {
    "connect": ["self", "pair", "kwargs"],
    "disconnect": ["self"],
    "pair": ["self", "args", "kwargs"],
    "unpair": ["self"],
    "read_gatt_char": ["self", "characteristic", "use_cached", "kwargs"],
    "read_gatt_descriptor": ["self", "descriptor", "use_cached", "kwargs"],
    "write_gatt_char": ["self", "characteristic", "data", "response"],
    "write_gatt_descriptor": ["self", "descriptor", "data"],
    "start_notify": ["self", "characteristic", "callback", "kwargs"],
    "stop_notify": ["self", "characteristic"],
}
CLIENT_PROPERTIES = {"is_connected", "mtu_size"}
SCANNER_METHODS = {"start": ["self"], "stop": ["self"]}
ADDRESS = "E0:00:00:00:0C:01"


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_abstract_interface_is_the_one_our_backends_implement() -> None:
    assert BaseBleakClient.__abstractmethods__ == set(CLIENT_METHODS) | CLIENT_PROPERTIES
    assert BaseBleakScanner.__abstractmethods__ == set(SCANNER_METHODS)
    for name, expected in CLIENT_METHODS.items():
        assert params(getattr(BaseBleakClient, name)) == expected, name
    for name, expected in SCANNER_METHODS.items():
        assert params(getattr(BaseBleakScanner, name)) == expected, name
    assert params(BaseBleakClient.__init__) == [
        "self",
        "address_or_ble_device",
        "disconnected_callback",
        "timeout",
        "kwargs",
    ]
    assert params(BaseBleakScanner.__init__) == ["self", "detection_callback", "service_uuids"]
    assert not BumbleClient.__abstractmethods__
    assert not BumbleScanner.__abstractmethods__


def test_advertisement_data_fields_in_the_order_we_build_them() -> None:
    # edge_agent.emulation.backend.advertisement_data builds it positionally.
    assert AdvertisementData._fields == (
        "local_name", "manufacturer_data", "service_data", "service_uuids", "tx_power", "rssi", "platform_data",
    )  # fmt: skip


def recording_client() -> tuple[type[BaseBleakClient], list[tuple[str, Any]]]:
    """A client backend that records how bleak constructs and drives it."""
    calls: list[tuple[str, Any]] = []

    class Recording(BaseBleakClient):
        def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
            super().__init__(address_or_ble_device, **kwargs)
            calls.append(("init", {"address": self.address, **kwargs}))
            self._connected = False

        async def connect(self, pair: bool, **kwargs: Any) -> None:
            calls.append(("connect", pair))
            self._connected = True

        async def disconnect(self) -> None:
            calls.append(("disconnect", None))
            self._connected = False

        @property
        def is_connected(self) -> bool:
            return self._connected

        @property
        def mtu_size(self) -> int:
            return 23

        pair = unpair = read_gatt_char = read_gatt_descriptor = write_gatt_char = write_gatt_descriptor = None  # type: ignore[assignment]
        start_notify = stop_notify = None  # type: ignore[assignment]

    Recording.__abstractmethods__ = frozenset()
    return Recording, calls


def test_bleak_client_builds_the_backend_it_is_given() -> None:
    backend, calls = recording_client()
    client = BleakClient(ADDRESS, disconnected_callback=lambda _c: None, timeout=7.0, backend=backend)
    assert isinstance(client._backend, backend)
    [(what, kwargs)] = calls
    assert what == "init"
    assert kwargs["address"] == ADDRESS
    assert kwargs["timeout"] == 7.0
    assert callable(kwargs["disconnected_callback"])


def test_bleak_scanner_builds_the_backend_it_is_given() -> None:
    made: list[tuple[Any, ...]] = []

    class Recording(BaseBleakScanner):
        def __init__(self, detection_callback: Any, service_uuids: Any, scanning_mode: str, **kwargs: Any) -> None:
            super().__init__(detection_callback, service_uuids)
            made.append((detection_callback, service_uuids, scanning_mode))

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

    def callback(_d: BLEDevice, _a: AdvertisementData) -> None: ...

    scanner = BleakScanner(callback, backend=Recording)
    assert isinstance(scanner._backend, Recording)
    assert made == [(callback, None, "active")]


@pytest.mark.asyncio
async def test_establish_connection_forwards_the_backend_and_connects_through_it() -> None:
    backend, calls = recording_client()
    device = BLEDevice(ADDRESS, "HR", None)
    client = await establish_connection(BleakClient, device, "HR", max_attempts=1, backend=backend)
    try:
        assert isinstance(client._backend, backend)
        assert client.is_connected
        assert [what for what, _ in calls] == ["init", "connect"]
    finally:
        await client.disconnect()

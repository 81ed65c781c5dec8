"""A bleak backend over a bumble host stack, so the agent's production bleak code runs unchanged.

The agent builds every scanner and client at one construction point; with emulated devices it
passes the bound backend classes of an :class:`EmulatedRadio` instead of the platform default::

    radio = await EmulatedRadio.open(air)            # or EmulatedRadio.open_hci(process.hci)
    scanner = BleakScanner(callback, backend=radio.scanner_backend)
    client = await establish_connection(BleakClient, device, name, backend=radio.client_backend)

``radio.backends`` bundles both as :class:`BleakBackends`, whose ``None`` fields mean "platform
default", for an agent that takes one settings-built object either way.

Behaviour follows bleak's BlueZ backend where the spike found differences matter: the GAP (0x1800)
and GATT (0x1801) services are hidden, a characteristic's handle is its declaration handle (value
handle - 1), the disconnected callback fires on every link-down (ours included), ATT errors raise
:class:`bleak.exc.BleakGATTProtocolError`, the ATT MTU is exchanged at connect (517 asked).
Pairing happens only in ``connect(pair=True)`` / ``client.pair()`` (BlueZ would also elevate
security by itself after an Insufficient Encryption error; we do not). Everything must run on the
loop the radio was opened on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_16, normalize_uuid_32
from bumble import att, core, hci
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.transport.common import Transport

from edge_agent.emulation.link import VirtualAir, open_hci_host

__all__ = [
    "BleakBackends",
    "BumbleClient",
    "BumbleDeviceDetails",
    "BumbleScanner",
    "EmulatedLinkError",
    "EmulatedRadio",
]

_log = logging.getLogger(__name__)
_HIDDEN_SERVICES = {normalize_uuid_16(0x1800), normalize_uuid_16(0x1801)}
_REQUESTED_MTU = 517
_PROPERTY_NAMES: dict[Characteristic.Properties, CharacteristicPropertyName] = {
    Characteristic.Properties.BROADCAST: "broadcast",
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
    Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES: "authenticated-signed-writes",
    Characteristic.Properties.EXTENDED_PROPERTIES: "extended-properties",
}

AdStructures = tuple[tuple[int, bytes], ...]
_Backend = TypeVar("_Backend", "BumbleScanner", "BumbleClient")
ScanListener = Callable[[hci.Address, str | None, AdvertisementData], None]


class EmulatedLinkError(BleakError):
    """A bumble failure translated at the backend boundary (chained with ``from``)."""

    def __init__(self, address: str, operation: str, reason: str) -> None:
        super().__init__(f"{address}: {operation} failed: {reason}")
        self.address = address
        self.operation = operation
        self.reason = reason


@dataclass(frozen=True)
class BumbleDeviceDetails:
    """``BLEDevice.details`` for emulated devices (deliberately not a BlueZ ``{"path": ...}``)."""

    address: hci.Address


@dataclass(frozen=True)
class BleakBackends:
    """The ``backend=`` values for the agent's one construction point; ``None`` = platform."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None


def _uuid_str(value: core.UUID) -> str:
    raw = value.uuid_bytes
    if len(raw) == 2:
        return normalize_uuid_16(int.from_bytes(raw, "little"))
    if len(raw) == 4:
        return normalize_uuid_32(int.from_bytes(raw, "little"))
    return str(uuid.UUID(bytes=bytes(reversed(raw))))


def _uuid_list(data: bytes, size: int) -> list[str]:
    return [_uuid_str(core.UUID.from_bytes(data[i : i + size])) for i in range(0, len(data), size)]


def advertisement_data(structures: AdStructures, rssi: int, raw: object) -> AdvertisementData:
    """bleak's ``AdvertisementData`` from AD structures (Core Supplement, Part A)."""
    name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    sizes = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4, 0x06: 16, 0x07: 16}
    service_data_sizes = {0x16: 2, 0x20: 4, 0x21: 16}
    for ad_type, value in structures:
        if ad_type in (0x08, 0x09) and (name is None or ad_type == 0x09):
            name = value.decode("utf-8", errors="replace")
        elif ad_type in sizes:
            uuids += [u for u in _uuid_list(value, sizes[ad_type]) if u not in uuids]
        elif ad_type in service_data_sizes:
            size = service_data_sizes[ad_type]
            service_data[_uuid_str(core.UUID.from_bytes(value[:size]))] = value[size:]
        elif ad_type == 0xFF and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = value[2:]
        elif ad_type == 0x0A and value:
            tx_power = int.from_bytes(value[:1], "little", signed=True)
    return AdvertisementData(name, manufacturer, service_data, uuids, tx_power, rssi, (raw,))


class EmulatedRadio:
    """The agent's emulated Bluetooth adapter: a bumble central ``Device`` and its host stack."""

    def __init__(self, device: Device, *, transport: Transport | None = None) -> None:
        self.device = device
        self.loop = asyncio.get_running_loop()
        self.connect_lock = asyncio.Lock()  # bumble hosts allow one pending LE connect
        self._transport = transport
        self._listeners: set[ScanListener] = set()
        self._echo_candidates: dict[str, AdStructures] = {}
        self._names: dict[str, str] = {}
        self.scanner_backend = self._bind(BumbleScanner)
        self.client_backend = self._bind(BumbleClient)
        self.backends = BleakBackends(scanner=self.scanner_backend, client=self.client_backend)
        device.on("advertisement", self._on_advertisement)

    @classmethod
    async def open(cls, air: VirtualAir, *, name: str = "vigil-agent", address: str | None = None) -> EmulatedRadio:
        """A central on an in-process :class:`VirtualAir`."""
        address = address or air.allocate_address(central=True)
        device = Device(name=name, address=hci.Address(address), host=air.attach_host(name, address))
        await device.power_on()
        return cls(device)

    @classmethod
    async def open_hci(
        cls, transport_name: str, *, name: str = "vigil-agent", address: str = "C0:00:00:00:FF:01"
    ) -> EmulatedRadio:
        """A central whose controller lives in another process (``DeviceProcess.hci``)."""
        host, transport = await open_hci_host(transport_name)
        device = Device(name=name, address=hci.Address(address), host=host)
        await device.power_on()
        return cls(device, transport=transport)

    async def close(self) -> None:
        self._listeners.clear()
        with contextlib.suppress(core.BaseBumbleError):
            if self.device.is_scanning:
                await self.device.stop_scanning()
            for connection in list(self.device.connections.values()):
                await connection.disconnect()
            await self.device.power_off()
        if self._transport is not None:
            await self._transport.close()

    def check_loop(self) -> None:
        if asyncio.get_running_loop() is not self.loop:
            raise EmulatedLinkError("radio", "use", "called from another event loop")

    def _bind(self, base: type[_Backend]) -> type[_Backend]:
        """A subclass of ``base`` bound to this radio, keeping ``base``'s name (bleak's backend_id)."""
        return cast(type[_Backend], type(base.__name__, (base,), {"bound_radio": self}))

    # -------------------------------------------------------------- scanning

    async def add_scan_listener(self, listener: ScanListener) -> None:
        self._listeners.add(listener)
        if not self.device.is_scanning:
            self._echo_candidates.clear()
            await self.device.start_scanning(active=True, filter_duplicates=False)

    async def remove_scan_listener(self, listener: ScanListener) -> None:
        self._listeners.discard(listener)
        if not self._listeners and self.device.is_scanning:
            await self.device.stop_scanning()

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        key = advertisement.address.to_string(False)
        structures: AdStructures = tuple(dict.fromkeys((int(t), bytes(v)) for t, v in advertisement.data.ad_structures))
        if advertisement.is_scan_response:
            # bumble's virtual controller answers every scan with the advertising data again.
            if self._echo_candidates.pop(key, None) == structures:
                return
        else:
            self._echo_candidates[key] = structures
        adv = advertisement_data(structures, advertisement.rssi, advertisement)
        if adv.local_name:
            self._names[key] = adv.local_name
        for listener in list(self._listeners):
            listener(advertisement.address, self._names.get(key), adv)


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend; use ``EmulatedRadio.backends.scanner`` (bound to a radio)."""

    bound_radio: ClassVar[EmulatedRadio | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if self.bound_radio is None:
            raise EmulatedLinkError("radio", "scan", "use EmulatedRadio.backends.scanner")
        self._radio = self.bound_radio

    async def start(self) -> None:
        self._radio.check_loop()
        self.seen_devices = {}
        await self._radio.add_scan_listener(self._on_advertisement)

    async def stop(self) -> None:
        await self._radio.remove_scan_listener(self._on_advertisement)

    def _on_advertisement(self, address: hci.Address, name: str | None, adv: AdvertisementData) -> None:
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        text = address.to_string(False)
        device = self.create_or_update_device(text, text, name, BumbleDeviceDetails(address), adv)
        self.call_detection_callbacks(device, adv)


class BumbleClient(BaseBleakClient):
    """bleak client backend; use ``EmulatedRadio.backends.client`` (bound to a radio)."""

    bound_radio: ClassVar[EmulatedRadio | None] = None

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 30.0,
        services: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        if self.bound_radio is None:
            raise EmulatedLinkError("radio", "connect", "use EmulatedRadio.backends.client")
        self._radio = self.bound_radio
        details = getattr(address_or_ble_device, "details", None)
        self._peer_address = details.address if isinstance(details, BumbleDeviceDetails) else hci.Address(self.address)
        self._name = getattr(address_or_ble_device, "name", None)
        self._service_filter = services
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    # -------------------------------------------------------------- connection

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect (one LE connect at a time per radio), exchange MTU, discover services."""
        self._radio.check_loop()
        if self._connection is not None:
            return
        timeout = float(kwargs.get("timeout", self._timeout))
        device = self._radio.device
        try:
            async with asyncio.timeout(timeout):
                await self._radio.connect_lock.acquire()
            try:
                connection = await device.connect(self._peer_address, timeout=timeout)
            finally:
                self._radio.connect_lock.release()
        except core.TimeoutError as exc:
            raise TimeoutError from exc
        except core.BaseBumbleError as exc:
            raise EmulatedLinkError(self.address, "connect", str(exc)) from exc
        except asyncio.CancelledError:
            with contextlib.suppress(core.BaseBumbleError):
                await asyncio.shield(device.cancel_connection())  # type: ignore[no-untyped-call]
            raise
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        try:
            with self._gatt_errors("connect"):
                peer = self._peer = Peer(connection)
                await peer.request_mtu(_REQUESTED_MTU)
                self.services = await self._discover(peer)
            if pair:
                await self.pair()
        except BaseException:
            await self.disconnect()
            raise

    def _on_disconnection(self, reason: int) -> None:
        _log.debug("%s: link down, reason 0x%02X", self.address, reason)
        self._connection = None
        self._peer = None
        self._subscriptions.clear()
        if self._disconnected_callback is not None:
            self._radio.loop.call_soon(self._disconnected_callback)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(core.BaseBumbleError):
            await connection.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """SMP pairing (Just Works, bonding) unless the link is already encrypted."""
        connection = self._require_connection()
        if connection.is_encrypted:
            return
        with self._gatt_errors("pair"):
            await connection.pair()

    async def unpair(self) -> None:
        keystore = self._radio.device.keystore
        if keystore is not None:
            for name, _keys in await keystore.get_all():
                if name.split("/")[0] == self._peer_address.to_string(False):
                    await keystore.delete(name)
        await self.disconnect()

    # -------------------------------------------------------------- GATT

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        wanted = self._service_filter
        collection = BleakGATTServiceCollection()
        for service in await peer.discover_services():
            service_uuid = _uuid_str(service.uuid)
            if service_uuid in _HIDDEN_SERVICES or (wanted and service_uuid not in wanted):
                continue
            bleak_service = BleakGATTService(service, service.handle, service_uuid)
            collection.add_service(bleak_service)
            for char in await peer.discover_characteristics(service=service):
                properties = [n for flag, n in _PROPERTY_NAMES.items() if char.properties & flag]
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle - 1,
                    _uuid_str(char.uuid),
                    properties,
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for desc in await peer.discover_descriptors(char):
                    collection.add_descriptor(BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bleak_char))
        return collection

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise EmulatedLinkError(self.address, "request", "not connected")
        return self._connection

    def _require_peer(self) -> Peer:
        if self._connection is None or self._peer is None:
            raise EmulatedLinkError(self.address, "request", "not connected")
        return self._peer

    @contextlib.contextmanager
    def _gatt_errors(self, what: str) -> Iterator[None]:
        """Translate bumble failures; a request cut by a link drop surfaces as cancellation."""
        try:
            yield
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except core.TimeoutError as exc:
            raise TimeoutError from exc
        except core.BaseBumbleError as exc:
            raise EmulatedLinkError(self.address, what, str(exc)) from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._connection is not None or (task is not None and task.cancelling()):
                raise
            raise EmulatedLinkError(self.address, what, "disconnected") from None

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        if use_cached and (cached := peer.gatt_client.cached_values.get(characteristic.handle + 1)):
            return bytearray(cached[1])
        with self._gatt_errors("read"):
            return bytearray(await peer.read_value(characteristic.obj))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        with self._gatt_errors("read descriptor"):
            return bytearray(await peer.read_value(descriptor.obj))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool) -> None:
        peer = self._require_peer()
        with self._gatt_errors("write"):
            await peer.write_value(characteristic.obj, bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        peer = self._require_peer()
        with self._gatt_errors("write descriptor"):
            await peer.write_value(descriptor.obj, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe (notifications preferred over indications, as bleak specifies)."""
        peer = self._require_peer()

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        value_handle = characteristic.handle + 1
        try:
            with self._gatt_errors("start_notify"):
                await peer.subscribe(characteristic.obj, on_value, prefer_notify=True)
        except BaseException:
            for table in (peer.gatt_client.notification_subscribers, peer.gatt_client.indication_subscribers):
                table.pop(value_handle, None)
            raise
        self._subscriptions[characteristic.handle] = on_value

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        on_value = self._subscriptions.pop(characteristic.handle, None)
        with self._gatt_errors("stop_notify"):
            await peer.unsubscribe(characteristic.obj, on_value)

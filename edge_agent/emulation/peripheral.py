"""Emulated Bluetooth SIG health peripherals: real bumble GATT servers on a :class:`VirtualAir`.

A peripheral is built from a declarative :class:`ServiceSpec` list plus the services every device
here carries: Battery (0x180F), Device Information (0x180A) and Current Time (0x1805, reporting the
device's own clock, optionally skewed). Measurement payloads are raw ``bytes`` from the caller; this
module never encodes a measurement (that is ``edge_agent.devices``' job, and tests should feed it
public vectors). Profile factories and the glucose meter (which answers the Record Access Control
Point itself: that is device behaviour, not payload) live in :mod:`edge_agent.emulation.profiles`.

Typical use::

    air = VirtualAir()
    strap = heart_rate_strap(air, name="HR-1")  # from edge_agent.emulation.profiles
    await strap.start()
    ...
    await strap.notify(0x2A37, bytes.fromhex("1e5532002100"))
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from bleak.uuids import normalize_uuid_str
from bumble import att, hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import (
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
    Characteristic,
    CharacteristicValue,
    Descriptor,
    Service,
)

from edge_agent.emulation.link import VirtualAir

__all__ = [
    "CharacteristicSpec",
    "DeviceInformation",
    "EmulatedPeripheral",
    "PeripheralOptions",
    "ServiceSpec",
    "bleak_uuid",
    "sig_uuid",
]

UuidLike = int | str
_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_MAX_LEGACY_ADV = 31


def bleak_uuid(uuid: UuidLike) -> str:
    """The 128-bit lower-case form bleak uses: 0x2A37 -> '00002a37-0000-1000-8000-00805f9b34fb'."""
    return normalize_uuid_str(f"{uuid:04x}" if isinstance(uuid, int) else uuid)


def sig_uuid(uuid: UuidLike) -> UUID:
    """A bumble UUID, 16-bit when the UUID is a SIG (base) UUID so PDUs carry the short form."""
    full = bleak_uuid(uuid)
    if full.startswith("0000") and full.endswith(_BASE_SUFFIX):
        return UUID.from_16_bits(int(full[4:8], 16))
    return UUID(full)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CharacteristicSpec:
    """One characteristic. ``encrypted``: reading, writing and subscribing need a paired link."""

    uuid: UuidLike
    read: bool = False
    write: bool = False
    notify: bool = False
    indicate: bool = False
    value: bytes = b""
    encrypted: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    uuid: UuidLike
    characteristics: tuple[CharacteristicSpec, ...]
    advertised: bool = False


@dataclass(frozen=True)
class DeviceInformation:
    """Device Information service (0x180A) contents; ``system_id`` is the EUI-64 (8 bytes)."""

    manufacturer: str = "Vigil Emulated Devices"
    model: str = "EMU-1"
    serial: str = "SN0001"
    firmware: str = "1.0.0"
    system_id: bytes = bytes.fromhex("0001020304050607")


class PeripheralOptions(TypedDict, total=False):
    """Keyword options every profile factory passes through to :class:`EmulatedPeripheral`."""

    address: str
    info: DeviceInformation
    battery_level: int
    clock: Callable[[], datetime]
    clock_offset: timedelta
    advertising_interval_ms: float
    connectable_window: float | None
    max_mtu: int


class EmulatedPeripheral:
    """A bumble peripheral with a GATT database built from specs.

    ``clock_offset`` skews the device's wall clock (reported by Current Time 0x2A2B, naive local
    time = ``clock()`` + offset). ``connectable_window`` switches to the store-and-forward mode of
    cuffs and scales: the device only advertises for that many seconds after
    :meth:`take_measurement`, then indicates its stored measurements to whoever subscribes and
    disconnects.
    """

    def __init__(
        self,
        air: VirtualAir,
        *,
        name: str,
        services: Sequence[ServiceSpec],
        address: str | None = None,
        info: DeviceInformation | None = None,
        battery_level: int = 100,
        clock: Callable[[], datetime] = _utc_now,
        clock_offset: timedelta = timedelta(0),
        advertising_interval_ms: float = 20.0,
        connectable_window: float | None = None,
        max_mtu: int = 247,
    ) -> None:
        self.name = name
        self.address = address or air.allocate_address()
        self.info = info or DeviceInformation()
        self.clock = clock
        self.clock_offset = clock_offset
        self.advertising_interval_ms = advertising_interval_ms
        self.connectable_window = connectable_window
        self.device = Device(
            name=name,
            address=hci.Address(self.address),
            host=air.attach_host(name, self.address),
        )
        self.device.gatt_server.max_mtu = max_mtu
        self.connections: list[Connection] = []
        self._specs: dict[str, CharacteristicSpec] = {}
        self._values: dict[str, bytes] = {}
        self._chars: dict[str, Characteristic[bytes]] = {}
        self._errors: dict[tuple[str, str], deque[int]] = {}
        self._read_delays: dict[str, float] = {}
        self._stored: deque[tuple[str, bytes]] = deque()
        self._window_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        all_services = [*services, *self._standard_services(battery_level)]
        for spec in all_services:
            self.device.add_service(self._build_service(spec))
        self._advertised = [bleak_uuid(s.uuid) for s in all_services if s.advertised]
        self.device.on("connection", self._on_connection)
        self.device.on("characteristic_subscription", self._on_subscription)

    # ------------------------------------------------------------------ GATT database

    def _standard_services(self, battery_level: int) -> list[ServiceSpec]:
        info = self.info
        return [
            ServiceSpec(0x180F, (CharacteristicSpec(0x2A19, read=True, notify=True, value=bytes([battery_level])),)),
            ServiceSpec(
                0x180A,
                (
                    CharacteristicSpec(0x2A29, read=True, value=info.manufacturer.encode()),
                    CharacteristicSpec(0x2A24, read=True, value=info.model.encode()),
                    CharacteristicSpec(0x2A25, read=True, value=info.serial.encode()),
                    CharacteristicSpec(0x2A26, read=True, value=info.firmware.encode()),
                    CharacteristicSpec(0x2A23, read=True, value=info.system_id),
                ),
            ),
            ServiceSpec(0x1805, (CharacteristicSpec(0x2A2B, read=True, notify=True),)),
        ]

    def _build_service(self, spec: ServiceSpec) -> Service:
        return Service(sig_uuid(spec.uuid), [self._build_char(c) for c in spec.characteristics])

    def _build_char(self, spec: CharacteristicSpec) -> Characteristic[bytes]:
        key = bleak_uuid(spec.uuid)
        props = Characteristic.Properties(0)
        perms = att.Attribute.Permissions(0)
        if spec.read:
            props |= Characteristic.Properties.READ
            perms |= att.Attribute.Permissions.READABLE
            if spec.encrypted:
                perms |= att.Attribute.Permissions.READ_REQUIRES_ENCRYPTION
        if spec.write:
            props |= Characteristic.Properties.WRITE
            perms |= att.Attribute.Permissions.WRITEABLE
            if spec.encrypted:
                perms |= att.Attribute.Permissions.WRITE_REQUIRES_ENCRYPTION
        if spec.notify:
            props |= Characteristic.Properties.NOTIFY
        if spec.indicate:
            props |= Characteristic.Properties.INDICATE
        value: CharacteristicValue[bytes] = CharacteristicValue(
            read=lambda connection: self._read(key, connection),
            write=lambda connection, data: self._write(key, connection, data),
        )
        char: Characteristic[bytes] = Characteristic(sig_uuid(spec.uuid), props, perms, value)
        if spec.encrypted and (spec.notify or spec.indicate):
            # Subscribing (writing the CCCD) needs an encrypted link too.
            cccd_perms = (
                att.Attribute.Permissions.READABLE
                | att.Attribute.Permissions.WRITEABLE
                | att.Attribute.Permissions.WRITE_REQUIRES_ENCRYPTION
            )
            cccd_value = self.device.gatt_server.make_descriptor_value(char)
            char.descriptors = [Descriptor(GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR, cccd_perms, cccd_value)]
        self._specs[key] = spec
        self._values[key] = spec.value
        self._chars[key] = char
        return char

    def _raise_injected(self, key: str, op: str) -> None:
        queue = self._errors.get((key, op))
        if queue:
            raise att.ATT_Error(queue.popleft())

    async def _read(self, key: str, connection: Connection) -> bytes:
        if delay := self._read_delays.get(key):
            await asyncio.sleep(delay)
        self._raise_injected(key, "read")
        if not self._specs[key].read:
            raise att.ATT_Error(att.ErrorCode.READ_NOT_PERMITTED)
        if key == bleak_uuid(0x2A2B):
            return self.current_time_bytes()
        return self._values[key]

    def _write(self, key: str, connection: Connection, data: bytes) -> None:
        self._raise_injected(key, "write")
        if not self._specs[key].write:
            raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)
        self._values[key] = bytes(data)
        self.on_write(key, connection, bytes(data))

    def on_write(self, key: str, connection: Connection, data: bytes) -> None:
        """Hook for profiles with control points; raise ``att.ATT_Error`` to reject."""

    def current_time_bytes(self) -> bytes:
        """Current Time (0x2A2B): Date Time, day of week (Mon=1), fractions256, adjust reason."""
        now = self.clock() + self.clock_offset
        date_time = struct.pack("<HBBBBB", now.year, now.month, now.day, now.hour, now.minute, now.second)
        return date_time + bytes([now.isoweekday(), now.microsecond * 256 // 1_000_000, 0])

    # ------------------------------------------------------------------ lifecycle

    def advertising_data(self) -> bytes:
        structures: list[tuple[int, bytes]] = [(AdvertisingData.FLAGS, bytes([0x06]))]
        structures.append((AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()))
        short = [sig_uuid(u) for u in self._advertised if len(sig_uuid(u).uuid_bytes) == 2]
        long = [sig_uuid(u) for u in self._advertised if len(sig_uuid(u).uuid_bytes) != 2]
        if short:
            structures.append(
                (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, b"".join(u.to_bytes() for u in short))
            )
        if long:
            structures.append(
                (
                    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    b"".join(u.to_bytes(force_128=True) for u in long),
                )
            )
        data = bytes(AdvertisingData(structures))
        if len(data) > _MAX_LEGACY_ADV:
            raise ValueError(len(data))  # legacy advertising PDUs carry 31 bytes
        return data

    async def start(self) -> None:
        """Power on; advertise unless this is a connectable-window device."""
        await self.device.power_on()
        if self.connectable_window is None:
            await self._advertise(auto_restart=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._window_timer is not None:
            self._window_timer.cancel()
        await self.device.stop_advertising()
        for connection in list(self.connections):
            await connection.disconnect()
        await self.device.power_off()

    async def _advertise(self, *, auto_restart: bool) -> None:
        await self.device.start_advertising(
            auto_restart=auto_restart,
            advertising_data=self.advertising_data(),
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )

    def _on_connection(self, connection: Connection) -> None:
        self.connections.append(connection)
        connection.on("disconnection", lambda _reason: self._on_disconnection(connection))
        self._touch()
        if self.connectable_window is not None:
            if self._window_timer is not None:
                self._window_timer.cancel()
            self._spawn(self._deliver_stored(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        self._touch()

    def _on_subscription(self, connection: Connection, char: object, notify: bool, indicate: bool) -> None:
        self._touch()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked on (dis)connection and subscription.

        Unbounded: callers wrap it in ``asyncio.timeout``.
        """
        while not predicate():
            await self._changed.wait()

    def is_subscribed(self, uuid: UuidLike, connection: Connection | None = None) -> bool:
        return bool(self._subscribers(bleak_uuid(uuid), 0x03, connection))

    # ------------------------------------------------------------------ pushing values

    def _subscribers(self, key: str, bits: int, only: Connection | None = None) -> list[Connection]:
        handle = self._chars[key].handle
        found = []
        for bearer, cccds in self.device.gatt_server.subscribers.items():
            cccd = cccds.get(handle, b"\x00\x00")
            wanted = only is None or bearer is only
            if isinstance(bearer, Connection) and cccd[0] & bits and bearer in self.connections:
                found += [bearer] if wanted else []
        return found

    async def notify(self, uuid: UuidLike, payload: bytes) -> int:
        """Notify ``payload`` to every subscribed central; returns how many received it."""
        return await self._push(bleak_uuid(uuid), payload, indicate=False)

    async def indicate(self, uuid: UuidLike, payload: bytes) -> int:
        """Indicate ``payload`` and wait for each subscriber's confirmation."""
        return await self._push(bleak_uuid(uuid), payload, indicate=True)

    async def _push(self, key: str, payload: bytes, *, indicate: bool, only: Connection | None = None) -> int:
        delivered = 0
        for connection in self._subscribers(key, 0x02 if indicate else 0x01, only):
            if len(payload) > connection.att_mtu - 3:
                raise ValueError(len(payload), connection.att_mtu)  # would be truncated
            if indicate:
                delivered += await self._indicate_one(connection, self._chars[key], payload)
            else:
                await self.device.notify_subscriber(connection, self._chars[key], payload)
                delivered += 1
        return delivered

    async def _indicate_one(self, connection: Connection, char: Characteristic[bytes], payload: bytes) -> int:
        # bumble waits 15 s for a confirmation that a dropped link never sends: race the drop.
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_lost(_reason: int) -> None:
            if not lost.done():
                lost.set_result(None)

        connection.on("disconnection", on_lost)
        task = asyncio.create_task(self.device.indicate_subscriber(connection, char, payload))
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connection.remove_listener("disconnection", on_lost)
            if not task.done():
                task.cancel()
        if task.cancelled():
            return 0
        task.result()
        return 1

    def set_value(self, uuid: UuidLike, value: bytes) -> None:
        self._values[bleak_uuid(uuid)] = bytes(value)

    def value(self, uuid: UuidLike) -> bytes:
        return self._values[bleak_uuid(uuid)]

    async def set_battery_level(self, level: int) -> None:
        self.set_value(0x2A19, bytes([level]))
        await self.notify(0x2A19, bytes([level]))

    def inject_error(self, uuid: UuidLike, code: int, *, op: Literal["read", "write"] = "read", times: int = 1) -> None:
        """Answer the next ``times`` reads (or writes) of ``uuid`` with ATT error ``code``."""
        self._errors.setdefault((bleak_uuid(uuid), op), deque()).extend([code] * times)

    def delay_reads(self, uuid: UuidLike, seconds: float) -> None:
        """Answer reads of ``uuid`` only after ``seconds`` (a slow device; 0 turns it off)."""
        self._read_delays[bleak_uuid(uuid)] = seconds

    async def drop_link(self) -> None:
        """Cut every link abruptly: the central sees reason 0x08 (connection timeout)."""
        for connection in list(self.connections):
            await connection.disconnect(reason=hci.HCI_CONNECTION_TIMEOUT_ERROR)

    # ------------------------------------------------------------------ store and forward

    async def take_measurement(self, uuid: UuidLike, payload: bytes) -> None:
        """Store a measurement; in connectable-window mode open the window (advertise)."""
        self._stored.append((bleak_uuid(uuid), bytes(payload)))
        if self.connectable_window is None or self.connections:
            return
        if self._window_timer is not None:
            self._window_timer.cancel()
        if not self.device.is_advertising:
            await self._advertise(auto_restart=False)
        self._window_timer = asyncio.get_running_loop().call_later(
            self.connectable_window, lambda: self._spawn(self._close_window())
        )

    def store_measurement(self, uuid: UuidLike, payload: bytes) -> None:
        """Put a measurement in the device's memory without advertising (history it holds at start)."""
        self._stored.append((bleak_uuid(uuid), bytes(payload)))

    @property
    def stored_measurements(self) -> list[tuple[str, bytes]]:
        return list(self._stored)

    async def _close_window(self) -> None:
        self._window_timer = None
        if not self.connections:
            await self.device.stop_advertising()

    async def _deliver_stored(self, connection: Connection) -> None:
        window = self.connectable_window or 0.0
        wanted = {key for key, _ in self._stored}
        try:
            async with asyncio.timeout(window):
                await self.wait_until(
                    lambda: (
                        all(self._subscribers(k, 0x03, connection) for k in wanted)
                        or connection not in self.connections
                    )
                )
            while self._stored:
                key, payload = self._stored[0]
                if not await self._push(key, payload, indicate=self._specs[key].indicate, only=connection):
                    break  # link lost or the central unsubscribed: keep it for next time
                self._stored.popleft()
        except TimeoutError:
            pass
        if connection in self.connections:
            await connection.disconnect()

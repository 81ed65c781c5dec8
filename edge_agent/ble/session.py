"""One connection to one paired device: subscribe, read its clock and status, store what it measures.

:meth:`DeviceSession.run` connects (through :class:`~edge_agent.ble.radio.Radio`) and returns when
the link goes down; a device hanging up after delivering its memory (cuffs, scales) is a normal
end. In order, it reads Current Time (to correct the device clock, :mod:`edge_agent.timefix`),
subscribes to the profile's measurements (pairing first if the device demands encryption), asks a
glucose meter for its records after the last one taken (RACP, again every
``racp_poll_interval_s`` while connected), reads Battery Level (and subscribes to it) and, once
per agent run, Device Information.

Values arrive in bleak callbacks and go through one queue per session, so they are decoded and
stored strictly in arrival order; a glucose record is stored together with the RACP cursor it
advances (exactly once, even across a power cut). Failures are
:class:`~edge_agent.errors.DeviceError`: ``BleakError`` is translated here.

Glucose records go through :class:`~edge_agent.ble.glucose_intake.GlucoseIntake`: a record whose
``context_follows`` flag is set waits for its Measurement Context (0x2A34, same sequence number),
and is stored without it, flagged ``context_missing`` and counted, when the RACP procedure ends,
``glucose_context_timeout_s`` after it arrived, or when the link drops. Sequence numbers wrap from
65535 to 0: when a report ends at 65535 the session asks at once for the records after the wrap.

An RACP procedure ends with its response indication, whatever it says: an answer the decoder
rejects (a reserved response code, a record count of the wrong width) or a refusal ends it at
once and counts ``racp_error:<device address>``; only silence waits for ``racp_timeout_s``.

Values the decoders salvaged are counted once per value by their flag: ``rr_truncated``,
``device_time_invalid``, ``device_clock_not_set``.

The window a power cut can fall into: once bleak's callback has a value, the Bluetooth stack has
already confirmed it (an indication) to the device, which counts it delivered; the reading is safe
only when the outbox transaction holding it commits. ``on_committed`` (off by default: the agent
passes none) is told each :class:`CommitWindow` of a measurement that is not an RACP record, so
``python -m bench.edge_window`` measures that window on the real path.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from edge_agent.ble.glucose_intake import GLUCOSE_CURSOR, GlucoseIntake
from edge_agent.ble.profiles import BATTERY_LEVEL, CURRENT_TIME, DEVICE_INFORMATION, PROFILES, RACP, uuid16
from edge_agent.ble.radio import Radio
from edge_agent.convert import to_readings
from edge_agent.devices import DecodedReading, DecodeError, decode
from edge_agent.devices.battery import BatteryLevel
from edge_agent.devices.datetime_field import CurrentTime
from edge_agent.devices.glucose import GlucoseMeasurement
from edge_agent.devices.glucose_context import GlucoseMeasurementContext
from edge_agent.devices.heart_rate import RR_TRUNCATED
from edge_agent.devices.pulse_oximeter import DEVICE_CLOCK_NOT_SET
from edge_agent.devices.racp import (
    SEQUENCE_MODULUS,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    parse_racp_response,
    request_after,
)
from edge_agent.devices.reading import DEVICE_TIME_INVALID
from edge_agent.errors import DeviceLinkLost, OutboxFull, ProfileMismatch
from edge_agent.outbox.store import Cursor
from edge_agent.ports import Outbox
from edge_agent.settings import PairedDevice
from edge_agent.state import AgentState
from edge_agent.timefix import DeviceClock
from rpm_core.clock import Clock
from rpm_core.ids import AgentId, device_id
from rpm_core.reading import Reading

__all__ = ["GLUCOSE_CURSOR", "CommitWindow", "DeviceSession", "SessionOptions"]

_log = logging.getLogger(__name__)
_NEEDS_PAIRING: Final = frozenset(
    {
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
        BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION,
    }
)
_END: Final = None
_LAST_SEQUENCE: Final = SEQUENCE_MODULUS - 1
_RACP_FINE: Final = frozenset({RacpResponseCode.SUCCESS, RacpResponseCode.NO_RECORDS_FOUND})
# Flags of values the decoders salvaged instead of refusing; each is counted once per value.
SALVAGED: Final = frozenset({RR_TRUNCATED, DEVICE_TIME_INVALID, DEVICE_CLOCK_NOT_SET})


@dataclass(frozen=True, slots=True)
class SessionOptions:
    zone: ZoneInfo
    clock_skew_threshold: timedelta
    racp_poll_interval_s: float = 300.0
    battery_poll_interval_s: float = 1800.0
    racp_timeout_s: float = 60.0
    glucose_context_timeout_s: float = 10.0


class _Marker(enum.Enum):
    """Work the consumer does in queue order: release expired glucose records, or all of them."""

    EXPIRE = "expire"
    FLUSH = "flush"


@dataclass(frozen=True, slots=True)
class CommitWindow:
    """One value from bleak's callback to the commit of the outbox transaction holding its readings.

    ``received_ns`` and ``committed_ns`` are :func:`time.monotonic_ns` readings; ``seqs`` the
    sequence numbers committed (never a payload: ids only)."""

    address: str
    characteristic: int
    seqs: tuple[int, ...]
    received_ns: int
    committed_ns: int

    @property
    def seconds(self) -> float:
        return (self.committed_ns - self.received_ns) / 1e9


@dataclass(frozen=True, slots=True)
class _Value:
    characteristic: int
    payload: bytes
    received_at: datetime
    received_ns: int = 0  # time.monotonic_ns() in bleak's callback


def stop_if_cancelled() -> None:
    """Raise the cancellation of the current task that code below us swallowed.

    Python 3.11's ``asyncio.wait_for`` (bumble's ``Device.connect`` and GATT client use it) returns
    the inner result when the inner await finishes in the same loop iteration as the task's
    cancellation, and the task runs on as if never told to stop; only ``Task.cancelling()`` still
    says it was. A supervisor that went on from there would reconnect and stream forever while the
    agent waits for it to stop, so every place that goes on after a device call checks."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end. A GATT request whose answer lands just as the
    cancellation does may swallow it (Python 3.11's ``asyncio.wait_for``, inside bleak and bumble),
    and the task would then wait for the next RACP poll: cancel again until it is done."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        task.exception()  # retrieved: the caller reports the server's outcome through ``await server``


class DeviceSession:
    def __init__(
        self,
        paired: PairedDevice,
        *,
        radio: Radio,
        agent: AgentId,
        outbox: Outbox,
        state: AgentState,
        clock: Clock,
        options: SessionOptions,
        on_stored: Callable[[], None],
        on_committed: Callable[[CommitWindow], None] | None = None,
    ) -> None:
        self.paired = paired
        self.address = paired.address
        self._device_id = device_id(paired.address)
        self._radio = radio
        self._agent = agent
        self._outbox = outbox
        self._state = state
        self._clock = clock
        self._options = options
        self._on_stored = on_stored
        self._on_committed = on_committed
        self._queue: asyncio.Queue[_Value | _Marker | None] = asyncio.Queue()
        self._down = asyncio.Event()
        self._device_clock: DeviceClock | None = None
        self._glucose = GlucoseIntake(
            self.address,
            state=state,
            convert=self._convert,
            store=self._store_record,
            wake=lambda: self._queue.put_nowait(_Marker.EXPIRE),
            timeout=options.glucose_context_timeout_s,
        )
        self._racp_done = asyncio.Event()
        self._racp_ok = False

    # -- the session --------------------------------------------------------------------------

    async def run(self, device: BLEDevice) -> None:
        """Connect and serve until the link drops. Raises :class:`DeviceError` (and an outbox failure)."""
        client = await self._radio.connect(device, name=self.paired.name or self.address, disconnected=self._lost)
        try:
            stop_if_cancelled()
        except asyncio.CancelledError:
            with contextlib.suppress(BleakError, TimeoutError):
                await client.disconnect()
            raise
        _log.info("%s: connected", self.address)
        self._state.update_device(self.address, connected=True)
        consumer = asyncio.create_task(self._consume())
        server = asyncio.create_task(self._serve(client))
        try:
            await asyncio.wait({consumer, server}, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                consumer.result()  # storing failed: not a device problem, let it end the agent
            try:
                await server
            except DeviceLinkLost:
                if not self._down.is_set():
                    raise
        finally:
            await _cancelled(server)
            if not consumer.done():
                self._queue.put_nowait(_END)
                await consumer  # what arrived before the link went down is still stored
            self._glucose.close()
            self._state.update_device(self.address, connected=False)
            with contextlib.suppress(BleakError, TimeoutError):
                await client.disconnect()
            _log.info("%s: disconnected", self.address)

    def _lost(self, _client: BleakClient) -> None:
        self._down.set()

    @contextlib.contextmanager
    def _link(self, what: str) -> Iterator[None]:
        try:
            yield
        except (BleakError, TimeoutError) as exc:
            raise DeviceLinkLost(self.address, f"{what}: {type(exc).__name__}") from exc

    async def _serve(self, client: BleakClient) -> None:
        spec = PROFILES[self.paired.profile]
        if client.services.get_service(uuid16(spec.service)) is None:
            raise ProfileMismatch(self.address, spec.name)
        await self._read_clock(client)
        if spec.racp:
            self._glucose.cursor = await self._outbox.cursor(self.address, GLUCOSE_CURSOR)
        chars = [c for c in spec.measurements if client.services.get_characteristic(uuid16(c)) is not None]
        if not chars:
            raise ProfileMismatch(self.address, spec.name)
        for char in chars:
            await self._subscribe(client, char)
        if spec.racp:
            await self._subscribe(client, RACP)
            await self._poll_records(client)
        await self._read_battery(client, subscribe=True)
        if self._state.device(self.address).manufacturer is None:
            await self._read_information(client)
        await self._stay(client, racp=spec.racp)

    async def _stay(self, client: BleakClient, *, racp: bool) -> None:
        """Keep the link; re-ask RACP and re-read the battery now and then."""
        loop = asyncio.get_running_loop()
        next_racp = loop.time() + self._options.racp_poll_interval_s
        next_battery = loop.time() + self._options.battery_poll_interval_s
        while not self._down.is_set():
            wake = min(next_racp, next_battery) if racp else next_battery
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake):
                    await self._down.wait()
            if self._down.is_set():
                return
            if racp and loop.time() >= next_racp:
                await self._poll_records(client)
                next_racp = loop.time() + self._options.racp_poll_interval_s
            if loop.time() >= next_battery:
                await self._read_battery(client, subscribe=False)
                next_battery = loop.time() + self._options.battery_poll_interval_s

    # -- GATT steps ---------------------------------------------------------------------------

    def _callback(self, char: int) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def on_value(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._queue.put_nowait(_Value(char, bytes(data), self._clock.now(), time.monotonic_ns()))

        return on_value

    async def _subscribe(self, client: BleakClient, char: int) -> None:
        with self._link(f"subscribe 0x{char:04X}"):
            try:
                await client.start_notify(uuid16(char), self._callback(char))
            except BleakGATTProtocolError as exc:
                if exc.code not in _NEEDS_PAIRING:
                    raise
                _log.info("%s: pairing (the device requires encryption)", self.address)
                await client.pair()
                await client.start_notify(uuid16(char), self._callback(char))

    async def _read_optional(self, client: BleakClient, char: int) -> bytes | None:
        """A characteristic the device may lack or refuse: None then. A lost link still raises."""
        if client.services.get_characteristic(uuid16(char)) is None:
            return None
        with self._link(f"read 0x{char:04X}"):
            try:
                return bytes(await client.read_gatt_char(uuid16(char)))
            except BleakGATTProtocolError as exc:
                _log.info("%s: reading 0x%04X refused (%s)", self.address, char, exc.code.name)
                return None

    async def _read_clock(self, client: BleakClient) -> None:
        payload = await self._read_optional(client, CURRENT_TIME)
        if payload is None:
            return
        try:
            current = CurrentTime.from_bytes(payload)
        except DecodeError as exc:
            _log.warning("%s: undecodable current time (%s)", self.address, exc.reason)
            return
        clock = DeviceClock.measure(
            current, agent_now=self._clock.now(), zone=self._options.zone, threshold=self._options.clock_skew_threshold
        )
        self._device_clock = clock
        skew = None if clock is None else round(clock.skew.total_seconds(), 1)
        self._state.update_device(self.address, clock_skew_s=skew)
        if clock is not None and clock.skewed:
            _log.warning("%s: device clock off by %.0f s; correcting its timestamps", self.address, skew)

    async def _read_battery(self, client: BleakClient, *, subscribe: bool) -> None:
        payload = await self._read_optional(client, BATTERY_LEVEL)
        if payload is not None:
            self._set_battery(payload)
            char = client.services.get_characteristic(uuid16(BATTERY_LEVEL))
            if subscribe and char is not None and "notify" in char.properties:
                with self._link("subscribe battery"):
                    await client.start_notify(char, self._callback(BATTERY_LEVEL))

    def _set_battery(self, payload: bytes) -> None:
        try:
            self._state.update_device(self.address, battery_pct=BatteryLevel.from_bytes(payload).percent)
        except DecodeError as exc:
            _log.warning("%s: undecodable battery level (%s)", self.address, exc.reason)

    async def _read_information(self, client: BleakClient) -> None:
        info: dict[str, str] = {}
        for char, field in DEVICE_INFORMATION.items():
            payload = await self._read_optional(client, char)
            if payload is not None:
                info[field] = payload.decode("utf-8", errors="replace").strip("\x00 ")[:128]
        self._state.update_device(self.address, **info)

    async def _poll_records(self, client: BleakClient) -> None:
        """RACP: the stored records after the last one taken; once more if they reached 65535."""
        before = self._glucose.cursor
        ok = await self._request_records(client, request_after(before))
        if ok and before != _LAST_SEQUENCE and self._glucose.cursor == _LAST_SEQUENCE:
            await self._request_records(client, request_after(_LAST_SEQUENCE))

    async def _request_records(self, client: BleakClient, request: RacpRequest) -> bool:
        """One RACP procedure: write ``request`` and wait for its end; whether it succeeded."""
        self._racp_done.clear()
        self._racp_ok = False
        with self._link("RACP request"):
            await client.write_gatt_char(uuid16(RACP), bytes(request), response=True)
        if await self._wait(self._racp_done, self._options.racp_timeout_s):
            return self._racp_ok
        if self._down.is_set():
            raise DeviceLinkLost(self.address, "link lost during the RACP procedure")
        _log.warning("%s: no RACP response within %.0f s", self.address, self._options.racp_timeout_s)
        self._queue.put_nowait(_Marker.FLUSH)  # the records it sent get no more context
        return False

    async def _wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait for ``event`` until the timeout or the link goes down; whether it was set."""
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._down.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return event.is_set()

    # -- values, in arrival order -------------------------------------------------------------

    async def _consume(self) -> None:
        while (value := await self._queue.get()) is not _END:
            if isinstance(value, _Marker):
                await (self._glucose.flush() if value is _Marker.FLUSH else self._glucose.expire())
                continue
            try:
                await self._handle(value)
            except DecodeError as exc:
                self._state.count("decode_error")
                _log.warning("%s: undecodable 0x%04X value (%s)", self.address, value.characteristic, exc.reason)
        await self._glucose.flush()  # the link is down: no context is coming

    async def _handle(self, value: _Value) -> None:
        char, payload = value.characteristic, value.payload
        if char == RACP:
            await self._racp_response(payload)
        elif char == BATTERY_LEVEL:
            self._set_battery(payload)
        elif char == GlucoseMeasurement.CHARACTERISTIC:
            await self._glucose.measurement(GlucoseMeasurement.from_bytes(payload), value.received_at)
        elif char == GlucoseMeasurementContext.CHARACTERISTIC:
            await self._glucose.context(GlucoseMeasurementContext.from_bytes(payload))
        else:
            seqs = await self._store(self._convert(decode(char, payload), value.received_at), value.received_at)
            if seqs and self._on_committed is not None:
                committed = time.monotonic_ns()
                self._on_committed(CommitWindow(self.address, char, tuple(seqs), value.received_ns, committed))

    async def _racp_response(self, payload: bytes) -> None:
        """The end of the RACP procedure, whatever the meter answered."""
        try:
            response = parse_racp_response(payload)
        except DecodeError as exc:
            self._racp_failed(f"undecodable response ({exc.reason})")
        else:
            if isinstance(response, RacpResponse) and response.response_code not in _RACP_FINE:
                self._racp_failed(f"answered {response.response_code.name}")
            else:
                self._racp_ok = True
        finally:
            await self._glucose.flush()
            self._racp_done.set()

    def _racp_failed(self, why: str) -> None:
        self._state.count(f"racp_error:{self.address}")
        _log.warning("%s: RACP procedure failed: %s", self.address, why)

    def _convert(self, decoded: Sequence[DecodedReading], received_at: datetime) -> list[Reading]:
        """The readings of one decoded value; counts its drops and what the decoder salvaged."""
        for flag in sorted(frozenset().union(*(r.flags for r in decoded)) & SALVAGED):
            self._state.count(flag)
        readings, dropped = to_readings(
            decoded,
            agent=self._agent,
            device=self._device_id,
            received_at=received_at,
            zone=self._options.zone,
            clock=self._device_clock,
        )
        for reason in dropped:
            self._state.count(f"dropped_{reason}")
        return readings

    async def _store_record(self, readings: list[Reading], received_at: datetime, cursor: Cursor) -> bool:
        return await self._store(readings, received_at, cursor=cursor) is not None

    async def _store(
        self, readings: list[Reading], received_at: datetime, *, cursor: Cursor | None = None
    ) -> list[int] | None:
        """The sequence numbers committed (empty for a cursor alone), or None when nothing was stored."""
        if not readings and cursor is None:
            return None
        try:
            seqs = await self._outbox.append(readings, cursor=cursor)
        except OutboxFull:
            self._state.raise_alarm("disk_full")
            self._state.count("dropped_disk_full", len(readings))
            _log.error("%s: outbox full, %d reading(s) lost", self.address, len(readings))
            return None
        self._state.clear_alarm("disk_full")
        self._state.seen(self.address, received_at)
        if seqs:
            _log.debug("%s: committed seq %d-%d", self.address, seqs[0], seqs[-1])
            self._on_stored()
        return seqs

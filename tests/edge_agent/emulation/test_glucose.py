"""The emulated glucose meter's Record Access Control Point, through bleak and as a pure function."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakGATTProtocolError, BleakGATTProtocolErrorCode

from edge_agent.emulation import EmulatedRadio, GlucoseMeter, GlucoseRecord, RacpResponse, VirtualAir, bleak_uuid
from edge_agent.emulation.profiles import select_records
from tests.edge_agent.emulation.conftest import Started

MEASUREMENT = bleak_uuid(0x2A18)
CONTEXT = bleak_uuid(0x2A34)
RACP = bleak_uuid(0x2A52)
# Nordic glucose vector (seq 1), re-sequenced per record.
VECTOR = bytes.fromhex("1b0100e307021b0b0a1efbff1e00120501")


def record(sequence: int) -> bytes:
    return VECTOR[:1] + struct.pack("<H", sequence) + VECTOR[3:]


def response(opcode: int, code: RacpResponse) -> tuple[str, bytes]:
    return ("racp", bytes([0x06, 0x00, opcode, code]))


Event = tuple[str, bytes]


class Session:
    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.events: list[Event] = []
        self.done = asyncio.Event()
        self.arrived = asyncio.Event()

    def collector(self, tag: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def callback(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self.events.append((tag, bytes(data)))
            self.arrived.set()
            if tag == "racp":
                self.done.set()

        return callback

    async def request(self, command: bytes) -> list[Event]:
        """Write the RACP and collect everything up to its indication."""
        self.events.clear()
        self.done.clear()
        await self.client.write_gatt_char(RACP, command, response=True)
        await self.done.wait()
        return list(self.events)


@pytest_asyncio.fixture
async def meter(air: VirtualAir, started: Started) -> GlucoseMeter:
    device = GlucoseMeter(air, name="GLU-1", with_context=True)
    for sequence in range(1, 6):
        device.add_record(
            sequence, record(sequence), context=b"\x00" + struct.pack("<H", sequence) if sequence == 4 else None
        )
    await started(device)
    return device


@pytest_asyncio.fixture
async def session(radio: EmulatedRadio, meter: GlucoseMeter) -> AsyncIterator[Session]:
    async with asyncio.timeout(10):
        device = await BleakScanner.find_device_by_name("GLU-1", timeout=5.0, backend=radio.scanner_backend)
        assert device is not None
        client = BleakClient(device, backend=radio.client_backend)
        await client.connect()
        result = Session(client)
        await client.start_notify(MEASUREMENT, result.collector("measurement"))
        await client.start_notify(CONTEXT, result.collector("context"))
        await client.start_notify(RACP, result.collector("racp"))
    try:
        yield result
    finally:
        async with asyncio.timeout(10):
            await client.disconnect()


@pytest.mark.asyncio
async def test_report_records_from_a_sequence_number(session: Session) -> None:
    async with asyncio.timeout(10):
        events = await session.request(bytes([0x01, 0x03, 0x01]) + struct.pack("<H", 3))
    assert events == [
        ("measurement", record(3)),
        ("measurement", record(4)),
        ("context", b"\x00\x04\x00"),
        ("measurement", record(5)),
        response(0x01, RacpResponse.SUCCESS),
    ]


@pytest.mark.asyncio
async def test_report_all_and_last(session: Session) -> None:
    async with asyncio.timeout(10):
        every = await session.request(b"\x01\x01")
        last = await session.request(b"\x01\x06")
    assert [data for tag, data in every if tag == "measurement"] == [record(s) for s in range(1, 6)]
    assert last == [("measurement", record(5)), response(0x01, RacpResponse.SUCCESS)]


@pytest.mark.asyncio
async def test_contexts_can_lag_behind_their_measurements(session: Session, meter: GlucoseMeter) -> None:
    meter.records.clear()
    for sequence in (1, 2, 3):
        meter.add_record(sequence, record(sequence), context=b"\x00" + struct.pack("<H", sequence))
    meter.context_lag = 1
    async with asyncio.timeout(10):
        events = await session.request(b"\x01\x01")
    assert events == [
        ("measurement", record(1)),
        ("measurement", record(2)),
        ("context", b"\x00\x01\x00"),  # record 1's context, a record later
        ("measurement", record(3)),
        ("context", b"\x00\x02\x00"),
        ("context", b"\x00\x03\x00"),  # the last one before the response
        response(0x01, RacpResponse.SUCCESS),
    ]


@pytest.mark.asyncio
async def test_a_faulty_meter_answers_every_request_with_garbage(session: Session, meter: GlucoseMeter) -> None:
    meter.faulty_response = b"\x06\x00\x01\x0a"
    async with asyncio.timeout(10):
        assert await session.request(b"\x01\x01") == [("racp", b"\x06\x00\x01\x0a")]
        assert await session.request(b"\x04\x01") == [("racp", b"\x06\x00\x01\x0a")]


@pytest.mark.asyncio
async def test_number_of_records(session: Session) -> None:
    async with asyncio.timeout(10):
        assert await session.request(b"\x04\x01") == [("racp", b"\x05\x00\x05\x00")]
        assert await session.request(b"\x04\x03\x01\x04\x00") == [("racp", b"\x05\x00\x02\x00")]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"\x01\x03\x01\x0a\x00", response(0x01, RacpResponse.NO_RECORDS_FOUND)),
        (b"\x02\x01", response(0x02, RacpResponse.OPCODE_NOT_SUPPORTED)),
        (b"\x01\x07", response(0x01, RacpResponse.OPERATOR_NOT_SUPPORTED)),
        (b"\x01\x00", response(0x01, RacpResponse.INVALID_OPERATOR)),
        (b"\x01\x03\x02\x00\x00", response(0x01, RacpResponse.OPERAND_NOT_SUPPORTED)),
        (b"\x01\x03\x01\x03", response(0x01, RacpResponse.INVALID_OPERAND)),
        (b"\x03\x01", response(0x03, RacpResponse.INVALID_OPERATOR)),
    ],
)
@pytest.mark.asyncio
async def test_refused_requests_answer_with_the_response_code(
    session: Session, command: bytes, expected: Event
) -> None:
    async with asyncio.timeout(10):
        assert await session.request(command) == [expected]


@pytest.mark.asyncio
async def test_abort_stops_a_report_in_progress(session: Session, meter: GlucoseMeter) -> None:
    meter.record_interval = 0.05
    async with asyncio.timeout(10):
        await session.client.write_gatt_char(RACP, b"\x01\x01", response=True)
        await session.arrived.wait()  # the first record landed; the report is still running
        with pytest.raises(BleakGATTProtocolError) as busy:
            await session.client.write_gatt_char(RACP, b"\x04\x01", response=True)
        assert busy.value.code == BleakGATTProtocolErrorCode.PROCEDURE_ALREADY_IN_PROGRESS
        await session.client.write_gatt_char(RACP, b"\x03\x00", response=True)
        await session.done.wait()
        # The barrier: one more request answered. Notifications and indications share the link in
        # order, so a record the aborted report still sent would be in before this answer.
        session.done.clear()
        await session.client.write_gatt_char(RACP, b"\x04\x01", response=True)  # number of records
        await session.done.wait()
    measurements = [data for tag, data in session.events if tag == "measurement"]
    assert 1 <= len(measurements) < 5
    assert session.events[-2] == response(0x03, RacpResponse.SUCCESS)
    assert session.events[-1] == ("racp", bytes([0x05, 0x00]) + struct.pack("<H", 5))


@pytest.mark.asyncio
async def test_racp_write_needs_indications_enabled(radio: EmulatedRadio, meter: GlucoseMeter) -> None:
    async with asyncio.timeout(10):
        device = await BleakScanner.find_device_by_name("GLU-1", timeout=5.0, backend=radio.scanner_backend)
        assert device is not None
        async with BleakClient(device, backend=radio.client_backend) as client:
            with pytest.raises(BleakGATTProtocolError) as refused:
                await client.write_gatt_char(RACP, b"\x01\x01", response=True)
            assert refused.value.code == BleakGATTProtocolErrorCode.CCCD_IMPROPERLY_CONFIGURED
            meter.inject_error(0x2A52, 0x81, op="write")
            await client.start_notify(RACP, lambda _c, _d: None)
            with pytest.raises(BleakGATTProtocolError) as injected:
                await client.write_gatt_char(RACP, b"\x04\x01", response=True)
            assert injected.value.code == 0x81


# A meter's memory in storage order (oldest first) after its sequence numbers wrapped at 65535.
RECORDS = [GlucoseRecord(s, s.to_bytes(2, "little")) for s in (65533, 65534, 65535, 0, 1)]


@pytest.mark.parametrize(
    ("operator", "operand", "expected"),
    [
        (1, b"", [65533, 65534, 65535, 0, 1]),  # storage order, not numeric order
        (2, b"\x01\x01\x00", [0, 1]),
        (3, b"\x01\xfe\xff", [65534, 65535]),
        (4, b"\x01\x01\x00\xfe\xff", [65533, 65534, 1]),  # numbers compared as numbers
        (5, b"", [65533]),  # the oldest stored
        (6, b"", [1]),  # the newest stored
        (4, b"\x01\x03\x00\x02\x00", RacpResponse.INVALID_OPERAND),
        (1, b"\x01", RacpResponse.INVALID_OPERAND),
        (3, b"", RacpResponse.INVALID_OPERAND),
        (3, b"\x02\x00\x00", RacpResponse.OPERAND_NOT_SUPPORTED),
        (0, b"", RacpResponse.INVALID_OPERATOR),
        (9, b"", RacpResponse.OPERATOR_NOT_SUPPORTED),
    ],
)
def test_select_records(operator: int, operand: bytes, expected: list[int] | RacpResponse) -> None:
    selected = select_records(RECORDS, operator, operand)
    if isinstance(expected, RacpResponse):
        assert selected == expected
    else:
        assert isinstance(selected, list)
        assert [r.sequence for r in selected] == expected

"""Correctly shaped emulated health devices, one factory per SIG profile, plus the glucose meter.

Every factory takes the :class:`VirtualAir`, a ``name`` (advertised as the complete local name),
``encrypted=True`` to require pairing on the measurement characteristics, profile constants, and
the :class:`PeripheralOptions` (``connectable_window=`` for cuffs and scales that only advertise
after a measurement, ``clock_offset=`` for a skewed device clock, ...).

The glucose meter keeps ``(sequence, measurement bytes, optional context bytes)`` records in
the order they were stored and answers the Record Access Control Point (0x2A52) as the Glucose
Profile specifies: op codes 1 (report stored records), 4 (report number of records) and 3
(abort); operators all, <=, >=, within range (filter type 0x01, sequence number, uint16,
compared as plain numbers), first and last. Records are reported in storage order, so a meter
whose sequence numbers wrapped from 65535 to 0 reports 65534, 65535, 0, 1 for "all". Results
arrive as 0x2A18 (and 0x2A34) notifications followed by a Response Code indication
``06 00 <request op> <code>``, or a Number of Records indication ``05 00 <uint16>``.

Quirks for tests: ``context_lag=n`` sends each record's context only after ``n`` further
records' measurements (or at the end of the report), as a meter may; ``faulty_response=bytes``
answers every RACP request with those bytes instead of a valid response (a broken meter).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Unpack

from bumble import att
from bumble.device import Connection

from edge_agent.emulation.link import VirtualAir
from edge_agent.emulation.peripheral import (
    CharacteristicSpec,
    EmulatedPeripheral,
    PeripheralOptions,
    ServiceSpec,
    bleak_uuid,
)

__all__ = [
    "PROFILES",
    "GlucoseMeter",
    "GlucoseRecord",
    "RacpResponse",
    "blood_pressure_cuff",
    "glucose_meter",
    "heart_rate_strap",
    "pulse_oximeter",
    "select_records",
    "thermometer",
    "weight_scale",
]

C = CharacteristicSpec


def heart_rate_strap(
    air: VirtualAir,
    *,
    name: str = "Vigil HR",
    encrypted: bool = False,
    body_sensor_location: int = 1,
    **options: Unpack[PeripheralOptions],
) -> EmulatedPeripheral:
    """Heart Rate 0x180D: 0x2A37 measurement (notify), 0x2A38 body sensor location (1 chest)."""
    service = ServiceSpec(
        0x180D,
        (
            C(0x2A37, notify=True, encrypted=encrypted),
            C(0x2A38, read=True, value=bytes([body_sensor_location])),
        ),
        advertised=True,
    )
    return EmulatedPeripheral(air, name=name, services=[service], **options)


def blood_pressure_cuff(
    air: VirtualAir,
    *,
    name: str = "Vigil BP",
    encrypted: bool = False,
    feature: int = 0x0000,
    **options: Unpack[PeripheralOptions],
) -> EmulatedPeripheral:
    """Blood Pressure 0x1810: 0x2A35 (indicate), 0x2A36 intermediate cuff (notify), 0x2A49."""
    service = ServiceSpec(
        0x1810,
        (
            C(0x2A35, indicate=True, encrypted=encrypted),
            C(0x2A36, notify=True, encrypted=encrypted),
            C(0x2A49, read=True, value=struct.pack("<H", feature)),
        ),
        advertised=True,
    )
    return EmulatedPeripheral(air, name=name, services=[service], **options)


def thermometer(
    air: VirtualAir,
    *,
    name: str = "Vigil Temp",
    encrypted: bool = False,
    temperature_type: int = 6,
    **options: Unpack[PeripheralOptions],
) -> EmulatedPeripheral:
    """Health Thermometer 0x1809: 0x2A1C (indicate), 0x2A1D temperature type (6 mouth)."""
    service = ServiceSpec(
        0x1809,
        (
            C(0x2A1C, indicate=True, encrypted=encrypted),
            C(0x2A1D, read=True, value=bytes([temperature_type])),
        ),
        advertised=True,
    )
    return EmulatedPeripheral(air, name=name, services=[service], **options)


def pulse_oximeter(
    air: VirtualAir,
    *,
    name: str = "Vigil SpO2",
    encrypted: bool = False,
    features: bytes = b"\x00\x00",
    **options: Unpack[PeripheralOptions],
) -> EmulatedPeripheral:
    """Pulse Oximeter 0x1822: 0x2A5E spot-check (indicate), 0x2A5F continuous, 0x2A60."""
    service = ServiceSpec(
        0x1822,
        (
            C(0x2A5E, indicate=True, encrypted=encrypted),
            C(0x2A5F, notify=True, encrypted=encrypted),
            C(0x2A60, read=True, value=features),
        ),
        advertised=True,
    )
    return EmulatedPeripheral(air, name=name, services=[service], **options)


def weight_scale(
    air: VirtualAir,
    *,
    name: str = "Vigil Scale",
    encrypted: bool = False,
    feature: int = 0,
    **options: Unpack[PeripheralOptions],
) -> EmulatedPeripheral:
    """Weight Scale 0x181D: 0x2A9D measurement (indicate), 0x2A9E feature (uint32)."""
    service = ServiceSpec(
        0x181D,
        (
            C(0x2A9D, indicate=True, encrypted=encrypted),
            C(0x2A9E, read=True, value=struct.pack("<I", feature)),
        ),
        advertised=True,
    )
    return EmulatedPeripheral(air, name=name, services=[service], **options)


# ---------------------------------------------------------------------- glucose

RACP = bleak_uuid(0x2A52)
GLUCOSE_MEASUREMENT = bleak_uuid(0x2A18)
GLUCOSE_CONTEXT = bleak_uuid(0x2A34)


class RacpOpCode(IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_RECORDS = 4
    NUMBER_OF_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(IntEnum):
    NULL = 0
    ALL = 1
    LESS_OR_EQUAL = 2
    GREATER_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST = 5
    LAST = 6


class RacpResponse(IntEnum):
    SUCCESS = 1
    OPCODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


FILTER_SEQUENCE_NUMBER = 0x01


@dataclass(frozen=True)
class GlucoseRecord:
    sequence: int
    measurement: bytes
    context: bytes | None = None


def select_records(records: list[GlucoseRecord], operator: int, operand: bytes) -> list[GlucoseRecord] | RacpResponse:
    """Pure RACP record selection from ``records`` in storage order (oldest first), kept in that
    order; a :class:`RacpResponse` when the request is malformed."""
    ordered = list(records)
    if operator == RacpOperator.NULL:
        return RacpResponse.INVALID_OPERATOR
    if operator > RacpOperator.LAST:
        return RacpResponse.OPERATOR_NOT_SUPPORTED
    if operator in (RacpOperator.ALL, RacpOperator.FIRST, RacpOperator.LAST):
        if operand:
            return RacpResponse.INVALID_OPERAND
        return {RacpOperator.ALL: ordered, RacpOperator.FIRST: ordered[:1], RacpOperator.LAST: ordered[-1:]}[
            RacpOperator(operator)
        ]
    if not operand:
        return RacpResponse.INVALID_OPERAND
    if operand[0] != FILTER_SEQUENCE_NUMBER:
        return RacpResponse.OPERAND_NOT_SUPPORTED
    values = operand[1:]
    if operator == RacpOperator.WITHIN_RANGE:
        if len(values) != 4:
            return RacpResponse.INVALID_OPERAND
        low, high = struct.unpack("<HH", values)
        if low > high:
            return RacpResponse.INVALID_OPERAND
        return [r for r in ordered if low <= r.sequence <= high]
    if len(values) != 2:
        return RacpResponse.INVALID_OPERAND
    (bound,) = struct.unpack("<H", values)
    if operator == RacpOperator.LESS_OR_EQUAL:
        return [r for r in ordered if r.sequence <= bound]
    return [r for r in ordered if r.sequence >= bound]


class GlucoseMeter(EmulatedPeripheral):
    """Glucose 0x1808 with stored records and a working Record Access Control Point.

    ``record_interval`` paces the record notifications (seconds) so an abort can land mid-report.
    """

    def __init__(
        self,
        air: VirtualAir,
        *,
        name: str = "Vigil Glucose",
        encrypted: bool = False,
        with_context: bool = False,
        feature: int = 0x0000,
        record_interval: float = 0.0,
        context_lag: int = 0,
        faulty_response: bytes | None = None,
        **options: Unpack[PeripheralOptions],
    ) -> None:
        chars = [C(0x2A18, notify=True, encrypted=encrypted)]
        if with_context:
            chars.append(C(0x2A34, notify=True, encrypted=encrypted))
        chars += [
            C(0x2A51, read=True, value=struct.pack("<H", feature)),
            C(0x2A52, write=True, indicate=True, encrypted=encrypted),
        ]
        service = ServiceSpec(0x1808, tuple(chars), advertised=True)
        super().__init__(air, name=name, services=[service], **options)
        self.records: list[GlucoseRecord] = []
        self.record_interval = record_interval
        self.context_lag = context_lag
        self.faulty_response = faulty_response
        self._procedure: asyncio.Task[None] | None = None

    def add_record(self, sequence: int, measurement: bytes, context: bytes | None = None) -> None:
        self.records.append(GlucoseRecord(sequence, bytes(measurement), context))

    def on_write(self, key: str, connection: Connection, data: bytes) -> None:
        if key != RACP:
            return
        if not self._subscribers(RACP, 0x02, connection):
            raise att.ATT_Error(att.ErrorCode.CCCD_IMPROPERLY_CONFIGURED)
        running = self._procedure is not None and not self._procedure.done()
        if data[:1] == bytes([RacpOpCode.ABORT_OPERATION]):
            self._spawn(self._abort(connection, data, running))
            return
        if running:
            raise att.ATT_Error(att.ErrorCode.PROCEDURE_ALREADY_IN_PROGRESS)
        # Runs after the Write Response has been queued, as on a real meter.
        self._procedure = self._spawn(self._run(connection, data))

    async def _respond(self, connection: Connection, request: int, code: RacpResponse) -> None:
        await self._finish(connection, bytes([RacpOpCode.RESPONSE_CODE, RacpOperator.NULL, request, code]))

    async def _finish(self, connection: Connection, payload: bytes) -> None:
        """Send the procedure's final indication; the next request may start once it is sent."""
        if self._procedure is asyncio.current_task():
            self._procedure = None
        await self._push(RACP, payload, indicate=True, only=connection)

    async def _abort(self, connection: Connection, data: bytes, running: bool) -> None:
        if data[1:] != bytes([RacpOperator.NULL]):
            await self._respond(connection, RacpOpCode.ABORT_OPERATION, RacpResponse.INVALID_OPERATOR)
            return
        if running and self._procedure is not None:
            self._procedure.cancel()
        await self._respond(connection, RacpOpCode.ABORT_OPERATION, RacpResponse.SUCCESS)

    async def _run(self, connection: Connection, data: bytes) -> None:
        if self.faulty_response is not None:
            await self._finish(connection, self.faulty_response)
            return
        opcode = data[0] if data else 0
        if opcode not in (RacpOpCode.REPORT_STORED_RECORDS, RacpOpCode.REPORT_NUMBER_OF_RECORDS):
            await self._respond(connection, opcode, RacpResponse.OPCODE_NOT_SUPPORTED)
            return
        if len(data) < 2:
            await self._respond(connection, opcode, RacpResponse.INVALID_OPERATOR)
            return
        selected = select_records(self.records, data[1], data[2:])
        if isinstance(selected, RacpResponse):
            await self._respond(connection, opcode, selected)
        elif opcode == RacpOpCode.REPORT_NUMBER_OF_RECORDS:
            payload = struct.pack("<BBH", RacpOpCode.NUMBER_OF_RECORDS_RESPONSE, RacpOperator.NULL, len(selected))
            await self._finish(connection, payload)
        elif not selected:
            await self._respond(connection, opcode, RacpResponse.NO_RECORDS_FOUND)
        else:
            await self._report(connection, selected)
            await self._respond(connection, opcode, RacpResponse.SUCCESS)

    async def _report(self, connection: Connection, selected: list[GlucoseRecord]) -> None:
        contexts: list[tuple[int, bytes]] = []  # (records still to send before it, context)
        for record in selected:
            await self._push(GLUCOSE_MEASUREMENT, record.measurement, indicate=False, only=connection)
            if record.context is not None and GLUCOSE_CONTEXT in self._chars:
                contexts.append((self.context_lag, record.context))
            while contexts and contexts[0][0] <= 0:
                await self._push(GLUCOSE_CONTEXT, contexts.pop(0)[1], indicate=False, only=connection)
            contexts = [(lag - 1, context) for lag, context in contexts]
            await asyncio.sleep(self.record_interval)
        for _lag, context in contexts:
            await self._push(GLUCOSE_CONTEXT, context, indicate=False, only=connection)


def glucose_meter(air: VirtualAir, **kwargs: Any) -> GlucoseMeter:
    """Glucose 0x1808 (see :class:`GlucoseMeter` for the keyword arguments)."""
    return GlucoseMeter(air, **kwargs)


PROFILES: dict[str, Callable[..., EmulatedPeripheral]] = {
    "heart_rate": heart_rate_strap,
    "blood_pressure": blood_pressure_cuff,
    "thermometer": thermometer,
    "pulse_oximeter": pulse_oximeter,
    "weight_scale": weight_scale,
    "glucose": glucose_meter,
}

"""Record Access Control Point (0x2A52, write + indicate), as used by the Glucose service.

The agent writes a :class:`RacpRequest` and the meter answers with indications: first the stored
records (0x2A18 notifications), then one response, a :class:`RacpNumberOfRecords` (op code 5) or a
:class:`RacpResponse` (op code 6: the request's op code and a response code).

Layout: op code uint8 | operator uint8 | operand. Requests supported here filter by sequence
number (filter type 0x01, uint16 operands); the user-facing-time filter (0x02) is refused as
``invalid_value``. A request's op code, operator and operand must agree (e.g. ``>=`` takes one
sequence number, "all records" none) or construction raises
:class:`~edge_agent.devices.errors.InvalidMeasurement`.

None of this is a patient reading: ``readings()`` is always empty.

Sequence numbers are uint16 and wrap from 65535 to 0. Which record is newer is decided by
serial number arithmetic (RFC 1982, :func:`sequence_after`): a record is after the cursor when it
lies within the 32767 numbers that follow it. :func:`request_after` is what to ask for after the
last record taken: everything (no cursor yet), ``>= cursor + 1``, or, once the cursor is 65535,
``<= 32766`` (the records after the wrap). A meter numbers its records in order and keeps far
fewer than 32767, so "newer" is never ambiguous.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, enum_value, le, translating
from edge_agent.devices.errors import InvalidField, InvalidMeasurement
from edge_agent.devices.reading import DecodedReading

__all__ = [
    "RACP_CHARACTERISTIC",
    "SEQUENCE_MODULUS",
    "RacpFilter",
    "RacpNumberOfRecords",
    "RacpOpcode",
    "RacpOperator",
    "RacpRequest",
    "RacpResponse",
    "RacpResponseCode",
    "parse_racp_response",
    "request_after",
    "sequence_after",
]

RACP_CHARACTERISTIC: Final = 0x2A52
SEQUENCE_MODULUS: Final = 1 << 16
_LAST_SEQUENCE: Final = SEQUENCE_MODULUS - 1
_HALF: Final = SEQUENCE_MODULUS // 2


class RacpOpcode(enum.IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(enum.IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL = 2
    GREATER_THAN_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class RacpResponseCode(enum.IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


class RacpFilter(enum.IntEnum):
    SEQUENCE_NUMBER = 1
    USER_FACING_TIME = 2


_RECORD_OPCODES: Final = frozenset(
    {
        RacpOpcode.REPORT_STORED_RECORDS,
        RacpOpcode.DELETE_STORED_RECORDS,
        RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)
# How many sequence numbers each operator takes (operators absent here take no operand).
_OPERAND_COUNT: Final = {
    RacpOperator.LESS_THAN_OR_EQUAL: 1,
    RacpOperator.GREATER_THAN_OR_EQUAL: 1,
    RacpOperator.WITHIN_RANGE: 2,
}


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A request the agent writes; ``operand`` holds sequence numbers (filter type 0x01)."""

    opcode: RacpOpcode
    operator: RacpOperator
    operand: tuple[int, ...] = ()

    CHARACTERISTIC: ClassVar[int] = RACP_CHARACTERISTIC

    def __post_init__(self) -> None:
        c = RACP_CHARACTERISTIC
        if self.opcode is RacpOpcode.ABORT_OPERATION:
            if self.operator is not RacpOperator.NULL or self.operand:
                raise InvalidMeasurement(c, "operator", "abort takes the null operator, no operand")
            return
        if self.opcode not in _RECORD_OPCODES:
            raise InvalidMeasurement(c, "opcode", f"{self.opcode.name} is not a request")
        if self.operator is RacpOperator.NULL:
            raise InvalidMeasurement(c, "operator", "record requests need an operator")
        if len(self.operand) != _OPERAND_COUNT.get(self.operator, 0):
            raise InvalidMeasurement(c, "operand", f"wrong operand count for {self.operator.name}")
        for number in self.operand:
            check_uint(c, "operand", number, 16)
        if self.operator is RacpOperator.WITHIN_RANGE and self.operand[0] > self.operand[1]:
            raise InvalidMeasurement(c, "operand", "range minimum above maximum")

    # -- the requests an agent makes ------------------------------------------------------
    @classmethod
    def report_all(cls) -> Self:
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def report_from(cls, sequence: int) -> Self:
        """Report stored records with sequence number >= ``sequence``."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL, (sequence,))

    @classmethod
    def report_to(cls, sequence: int) -> Self:
        """Report stored records with sequence number <= ``sequence``."""
        return cls(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL, (sequence,))

    @classmethod
    def count_all(cls) -> Self:
        return cls(RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def count_from(cls, sequence: int) -> Self:
        """Report the number of stored records with sequence number >= ``sequence``."""
        return cls(
            RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
            RacpOperator.GREATER_THAN_OR_EQUAL,
            (sequence,),
        )

    @classmethod
    def abort(cls) -> Self:
        return cls(RacpOpcode.ABORT_OPERATION, RacpOperator.NULL)

    # -- wire form ------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(RACP_CHARACTERISTIC, payload)
        opcode = enum_value(reader, RacpOpcode, reader.u8(), "opcode")
        operator = enum_value(reader, RacpOperator, reader.u8(), "operator")
        operand: tuple[int, ...] = ()
        count = _OPERAND_COUNT.get(operator, 0)
        if count:
            kind = enum_value(reader, RacpFilter, reader.u8(), "filter_type")
            if kind is not RacpFilter.SEQUENCE_NUMBER:
                raise InvalidField(
                    RACP_CHARACTERISTIC,
                    field="filter_type",
                    reserved=False,
                    detail="only the sequence-number filter is supported",
                )
            operand = tuple(reader.u16() for _ in range(count))
        reader.finish()
        with translating(RACP_CHARACTERISTIC):
            return cls(opcode, operator, operand)

    def __bytes__(self) -> bytes:
        head = bytes((self.opcode, self.operator))
        if not self.operand:
            return head
        return head + bytes((RacpFilter.SEQUENCE_NUMBER,)) + b"".join(le(n, 2) for n in self.operand)


@dataclass(frozen=True, slots=True)
class RacpNumberOfRecords:
    """Op code 5: the number of stored records matching a "report number" request."""

    count: int

    def __post_init__(self) -> None:
        check_uint(RACP_CHARACTERISTIC, "count", self.count, 16)

    def __bytes__(self) -> bytes:
        return bytes((RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, RacpOperator.NULL)) + le(self.count, 2)

    def readings(self) -> list[DecodedReading]:
        return []


@dataclass(frozen=True, slots=True)
class RacpResponse:
    """Op code 6: how the request with op code ``request_opcode`` (any byte the client sent,
    so a plain int) ended."""

    request_opcode: int
    response_code: RacpResponseCode

    def __post_init__(self) -> None:
        check_uint(RACP_CHARACTERISTIC, "request_opcode", self.request_opcode, 8)

    @property
    def ok(self) -> bool:
        return self.response_code is RacpResponseCode.SUCCESS

    def __bytes__(self) -> bytes:
        return bytes((RacpOpcode.RESPONSE_CODE, RacpOperator.NULL, self.request_opcode, self.response_code))

    def readings(self) -> list[DecodedReading]:
        return []


def parse_racp_response(payload: bytes) -> RacpNumberOfRecords | RacpResponse:
    """Parse an indication of 0x2A52; a request op code here is ``invalid_value``."""
    reader = Reader(RACP_CHARACTERISTIC, payload)
    opcode = enum_value(reader, RacpOpcode, reader.u8(), "opcode")
    operator = enum_value(reader, RacpOperator, reader.u8(), "operator")
    if operator is not RacpOperator.NULL:
        raise InvalidField(RACP_CHARACTERISTIC, field="operator", reserved=False, detail="responses use null")
    result: RacpNumberOfRecords | RacpResponse
    if opcode is RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        result = RacpNumberOfRecords(reader.u16())
    elif opcode is RacpOpcode.RESPONSE_CODE:
        request_opcode = reader.u8()
        code = enum_value(reader, RacpResponseCode, reader.u8(), "response_code")
        result = RacpResponse(request_opcode, code)
    else:
        raise InvalidField(RACP_CHARACTERISTIC, field="opcode", reserved=False, detail="not a response op code")
    reader.finish()
    return result


def sequence_after(candidate: int, reference: int) -> bool:
    """Whether record ``candidate`` comes after record ``reference`` (16-bit sequence numbers
    that wrap from 65535 to 0): within the 32767 numbers that follow ``reference``."""
    return 0 < (candidate - reference) % SEQUENCE_MODULUS < _HALF


def request_after(cursor: int | None) -> RacpRequest:
    """The request for the records after ``cursor`` (the last one taken; ``None``: none yet).

    After 65535 the next records are numbered from 0, so the request is ``<= 32766``, every
    number that :func:`sequence_after` puts after 65535.
    """
    if cursor is None:
        return RacpRequest.report_all()
    if cursor == _LAST_SEQUENCE:
        return RacpRequest.report_to(_HALF - 2)
    return RacpRequest.report_from(cursor + 1)

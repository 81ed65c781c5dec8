from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.devices.errors import DecodeError, InvalidMeasurement
from edge_agent.devices.glucose import RacpRequest as ReexportedRequest
from edge_agent.devices.racp import (
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    parse_racp_response,
    request_after,
    sequence_after,
)

from .strategies import racp_requests, racp_responses


@pytest.mark.parametrize(
    ("request_", "payload"),
    [
        (RacpRequest.report_from(5), "01 03 01 05 00"),  # records with sequence >= 5
        (RacpRequest.report_all(), "01 01"),
        (RacpRequest.report_to(0x7FFE), "01 02 01 FE 7F"),  # records with sequence <= 32766
        (RacpRequest.count_all(), "04 01"),
        (RacpRequest.count_from(0x1234), "04 03 01 34 12"),
        (RacpRequest.abort(), "03 00"),
        (RacpRequest(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.WITHIN_RANGE, (1, 9)), "01 04 01 01 00 09 00"),
        (RacpRequest(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD), "01 06"),
        (RacpRequest(RacpOpcode.DELETE_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL, (3,)), "02 02 01 03 00"),
    ],
)
def test_requests(request_: RacpRequest, payload: str) -> None:
    assert bytes(request_) == bytes.fromhex(payload)
    assert RacpRequest.from_bytes(bytes.fromhex(payload)) == request_


def test_glucose_reexports_the_control_point() -> None:
    assert ReexportedRequest is RacpRequest


@pytest.mark.parametrize(
    ("opcode", "operator", "operand"),
    [
        (RacpOpcode.ABORT_OPERATION, RacpOperator.ALL_RECORDS, ()),
        (RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.NULL, ()),
        (RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL, ()),
        (RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS, (1,)),
        (RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.WITHIN_RANGE, (9, 1)),
        (RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL, (1 << 16,)),
        (RacpOpcode.RESPONSE_CODE, RacpOperator.NULL, ()),
    ],
)
def test_inconsistent_requests_are_refused(
    opcode: RacpOpcode, operator: RacpOperator, operand: tuple[int, ...]
) -> None:
    with pytest.raises(InvalidMeasurement):
        RacpRequest(opcode, operator, operand)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("01 03 02 E8 07 01 01 00 00 00", "invalid_value"),  # user-facing-time filter
        ("01 03 03 05 00", "reserved_value"),  # filter type 3
        ("01 03 01 05", "truncated"),
        ("01 01 00", "trailing_bytes"),
        ("03 01", "invalid_value"),  # abort with an operator
        ("07 01", "reserved_value"),
    ],
)
def test_bad_requests(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        RacpRequest.from_bytes(bytes.fromhex(payload))
    assert caught.value.reason == reason
    assert caught.value.characteristic == 0x2A52


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("05 00 2A 00", RacpNumberOfRecords(42)),
        ("06 00 01 01", RacpResponse(1, RacpResponseCode.SUCCESS)),
        ("06 00 01 06", RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND)),
        ("06 00 03 07", RacpResponse(3, RacpResponseCode.ABORT_UNSUCCESSFUL)),
        ("06 00 09 02", RacpResponse(9, RacpResponseCode.OP_CODE_NOT_SUPPORTED)),
        ("06 00 04 09", RacpResponse(4, RacpResponseCode.OPERAND_NOT_SUPPORTED)),
    ],
)
def test_responses(payload: str, expected: RacpNumberOfRecords | RacpResponse) -> None:
    response = parse_racp_response(bytes.fromhex(payload))
    assert response == expected
    assert response.readings() == []
    assert bytes(response) == bytes.fromhex(payload)


def test_response_ok() -> None:
    assert RacpResponse(1, RacpResponseCode.SUCCESS).ok
    assert not RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND).ok


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("05 00 2A", "truncated"),
        ("06 00 01", "truncated"),
        ("05 00 2A 00 00", "trailing_bytes"),
        ("06 00 01 0A", "reserved_value"),
        ("06 00 01 00", "reserved_value"),
        ("05 01 2A 00", "invalid_value"),
        ("01 01", "invalid_value"),  # a request is not a response
        ("00 00", "reserved_value"),
    ],
)
def test_bad_responses(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_racp_response(bytes.fromhex(payload))
    assert caught.value.reason == reason


@given(racp_requests())
def test_request_round_trip(request_: RacpRequest) -> None:
    assert RacpRequest.from_bytes(bytes(request_)) == request_


@given(racp_responses)
def test_response_round_trip(response: RacpNumberOfRecords | RacpResponse) -> None:
    assert parse_racp_response(bytes(response)) == response


@pytest.mark.parametrize(
    ("candidate", "reference", "after"),
    [
        (6, 5, True),
        (5, 5, False),
        (4, 5, False),
        (0, 0xFFFF, True),  # the wrap: 0 follows 65535
        (3, 0xFFFE, True),
        (0xFFFF, 0, False),
        (5 + 0x7FFF, 5, True),  # the furthest number still after
        (5 + 0x8000, 5, False),  # half the circle away: before
        (0xFFF0, 10, False),  # an old record from before the wrap
    ],
)
def test_sequence_after(candidate: int, reference: int, after: bool) -> None:
    assert sequence_after(candidate, reference) is after


@pytest.mark.parametrize(
    ("cursor", "payload"),
    [
        (None, "01 01"),  # nothing taken yet: all records
        (0, "01 03 01 01 00"),
        (41, "01 03 01 2A 00"),
        (0xFFFE, "01 03 01 FF FF"),  # the last number before the wrap
        (0xFFFF, "01 02 01 FE 7F"),  # after the wrap: 0..32766, every number after 65535
    ],
)
def test_request_after(cursor: int | None, payload: str) -> None:
    assert bytes(request_after(cursor)) == bytes.fromhex(payload)


@given(st.integers(0, 0xFFFF), st.integers(1, 0x7FFF))
def test_the_next_records_are_after_the_cursor_and_requested(cursor: int, step: int) -> None:
    following = (cursor + step) % 0x10000
    assert sequence_after(following, cursor)
    assert not sequence_after(cursor, following)
    request = request_after(cursor)
    (bound,) = request.operand
    if request.operator is RacpOperator.GREATER_THAN_OR_EQUAL:
        # No wrap between them: asked for at once; after a wrap, asked once the cursor is 65535.
        assert following >= bound or following < cursor
    else:
        assert (cursor, request.operator) == (0xFFFF, RacpOperator.LESS_THAN_OR_EQUAL)
        assert following <= bound

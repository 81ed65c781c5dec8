from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.devices.errors import InvalidMeasurement, TrailingBytes, TruncatedPayload
from edge_agent.devices.sfloat import ABSENT_REASONS, Float, MedFloat, SFloat, Special

from .strategies import floats32, sfloats


@pytest.mark.parametrize(
    ("raw", "mantissa", "exponent", "value"),
    [
        (0xF014, 20, -1, 2.0),  # docs/reference/ble-gatt.md: 0xF014 -> 2.0
        (0xE0C8, 200, -2, 2.0),  # 0xE0C8 -> 2.00: same number, more precision
        (0x0B2E, -1234, 0, -1234.0),
        (0x0000, 0, 0, 0.0),
        (0xF0BD, 189, -1, 18.9),
        (0x7001, 1, 7, 10_000_000.0),
        (0x87FD, 2045, -8, 0.00002045),
    ],
)
def test_sfloat_reference_values(raw: int, mantissa: int, exponent: int, value: float) -> None:
    number = SFloat.from_raw(raw)
    assert number == SFloat(mantissa, exponent)
    assert number.value == value
    assert number.special is None
    assert number.absent_reason is None
    assert number.to_raw() == raw


def test_the_exponent_is_kept_as_precision() -> None:
    assert SFloat.from_raw(0xF014) != SFloat.from_raw(0xE0C8)
    assert SFloat.from_raw(0xF014).value == SFloat.from_raw(0xE0C8).value


@pytest.mark.parametrize(
    ("cls", "raw", "special", "reason"),
    [
        (SFloat, 0x07FF, Special.NAN, "not-a-number"),
        (SFloat, 0x0800, Special.NRES, "error"),
        (SFloat, 0x07FE, Special.POSITIVE_INFINITY, "positive-infinity"),
        (SFloat, 0x0802, Special.NEGATIVE_INFINITY, "negative-infinity"),
        (SFloat, 0x0801, Special.RESERVED, "error"),
        (Float, 0x007FFFFF, Special.NAN, "not-a-number"),
        (Float, 0x00800000, Special.NRES, "error"),
        (Float, 0x007FFFFE, Special.POSITIVE_INFINITY, "positive-infinity"),
        (Float, 0x00800002, Special.NEGATIVE_INFINITY, "negative-infinity"),
        (Float, 0x00800001, Special.RESERVED, "error"),
    ],
)
def test_special_values_carry_no_number(cls: type[MedFloat], raw: int, special: Special, reason: str) -> None:
    number = cls.from_raw(raw)
    assert number.special is special
    assert number.value is None
    assert number.convert(7.5) is None
    assert number.absent_reason == reason
    assert special.absent_reason == reason
    assert number.to_raw() == raw
    assert cls(special=special).to_raw() == raw


def test_absent_reasons_are_the_fhir_codes() -> None:
    assert {s.absent_reason for s in Special} == ABSENT_REASONS
    assert {"not-a-number", "error", "positive-infinity", "negative-infinity"} == ABSENT_REASONS


@pytest.mark.parametrize(
    ("raw", "special"), [(0x17FF, Special.NAN), (0xF800, Special.NRES), (0x97FE, Special.POSITIVE_INFINITY)]
)
def test_special_mantissa_with_other_exponent_is_still_special(raw: int, special: Special) -> None:
    number = SFloat.from_raw(raw)
    assert number == SFloat(special=special)
    assert number.value is None
    assert number.to_raw() == raw & 0x0FFF  # encoded back with the canonical exponent 0


def test_float_thermometer_value() -> None:
    number = Float.from_bytes(bytes.fromhex("B00E00FE"))
    assert number == Float(3760, -2)
    assert number.value == 37.6
    assert bytes(number) == bytes.fromhex("B00E00FE")


def test_float_negative_mantissa_and_exponent() -> None:
    number = Float.from_raw(0xFDFFFF85)  # mantissa 0xFFFF85 = -123, exponent -3
    assert number == Float(-123, -3)
    assert number.value == -0.123


def test_sfloat_bytes_are_little_endian() -> None:
    assert bytes(SFloat(189, -1)) == b"\xbd\xf0"
    assert SFloat.from_bytes(b"\xbd\xf0") == SFloat(189, -1)


def test_from_bytes_checks_length() -> None:
    with pytest.raises(TruncatedPayload) as short:
        SFloat.from_bytes(b"\x01", characteristic=0x2A35)
    assert (short.value.reason, short.value.characteristic) == ("truncated", 0x2A35)
    with pytest.raises(TrailingBytes) as long:
        Float.from_bytes(b"\x00" * 5)
    assert long.value.reason == "trailing_bytes"
    assert long.value.extra == 1


def test_conversion_rounds_to_the_reported_precision() -> None:
    assert SFloat(189, -1).convert(7.50061683) == 141.762  # 141.76165808...
    assert SFloat(11, 0).convert(7.50061683) == 82.51  # 82.50678513...
    assert SFloat(159, -1).convert(7.50061683) == 119.26
    assert Float(986, -1).convert(5 / 9, -32 * 5 / 9) == 37.0  # 98.6 F


@pytest.mark.parametrize(
    ("cls", "given_value", "expected"),
    [
        (Float, "37.60", Float(3760, -2)),
        (SFloat, "37.60", SFloat(376, -1)),  # 3760 does not fit 12 bits: a trailing zero goes
        (SFloat, 37.6, SFloat(376, -1)),
        (SFloat, 5000, SFloat(500, 1)),
        (SFloat, Decimal("-1.5"), SFloat(-15, -1)),
        (SFloat, "1E+3", SFloat(1, 3)),
        (Float, -1234, Float(-1234, 0)),
    ],
)
def test_of_builds_from_decimals(cls: type[MedFloat], given_value: str | float | Decimal, expected: MedFloat) -> None:
    assert cls.of(given_value) == expected


@pytest.mark.parametrize("bad", ["nan", "Infinity", "abc", 2047, "0.000000001", "1E+9"])
def test_of_refuses_what_the_format_cannot_carry(bad: str | int) -> None:
    with pytest.raises(InvalidMeasurement):
        SFloat.of(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mantissa": 2046},  # the +INF code is not a number
        {"mantissa": -2046},
        {"mantissa": 1, "exponent": 8},
        {"mantissa": 1, "exponent": -9},
        {"mantissa": 1, "special": Special.NAN},
        {"exponent": 1, "special": Special.NAN},
    ],
)
def test_construction_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidMeasurement):
        SFloat(**kwargs)  # type: ignore[arg-type]


@given(sfloats)
def test_sfloat_round_trips(number: SFloat) -> None:
    assert SFloat.from_bytes(bytes(number)) == number
    assert SFloat.from_raw(number.to_raw()) == number


@given(floats32)
def test_float_round_trips(number: Float) -> None:
    assert Float.from_bytes(bytes(number)) == number


@given(st.integers(0, 0xFFFF))
def test_every_sfloat_code_decodes_and_canonical_codes_reencode(raw: int) -> None:
    number = SFloat.from_raw(raw)
    if number.special is None or raw >> 12 == 0:
        assert number.to_raw() == raw


@given(sfloats)
def test_value_is_the_float_nearest_the_exact_decimal(number: SFloat) -> None:
    if number.special is None:
        assert number.value == float(Decimal(number.mantissa).scaleb(number.exponent))


@given(floats32)
def test_float_value_is_the_float_nearest_the_exact_decimal(number: Float) -> None:
    if number.special is None:
        assert number.value == float(Decimal(number.mantissa).scaleb(number.exponent))

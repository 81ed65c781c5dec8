from __future__ import annotations

import pytest

from edge_agent.devices._codec import Reader, scale
from edge_agent.devices.errors import InvalidField, TrailingBytes, TruncatedPayload


def test_reader_reads_little_endian_fields() -> None:
    reader = Reader(0x2A5E, bytes.fromhex("01 3412 FBFF 220000 ff".replace(" ", "")))
    assert reader.u8() == 1
    assert reader.u16() == 0x1234
    assert reader.s16() == -5
    assert reader.u24() == 0x22
    assert reader.remaining == 1
    with pytest.raises(TrailingBytes) as caught:
        reader.finish()
    assert (caught.value.offset, caught.value.extra, caught.value.characteristic) == (8, 1, 0x2A5E)


def test_reader_reports_truncation_with_offsets() -> None:
    reader = Reader(0x2A37, b"\x01\x02")
    reader.u8()
    with pytest.raises(TruncatedPayload) as caught:
        reader.u16()
    assert (caught.value.offset, caught.value.needed, caught.value.available) == (1, 2, 1)
    assert caught.value.reason == "truncated"


def test_reserved_flag_bits_are_rejected() -> None:
    with pytest.raises(InvalidField) as caught:
        Reader(0x2A37, b"\x20").flags(0x1F)
    assert (caught.value.field, caught.value.reason) == ("flags", "reserved_value")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((138, 0), 138.0),  # no conversion: exact
        ((3760, -2), 37.6),
        ((189, -1, 7.50061683), 141.762),  # 0.1 kPa = 0.75 mm[Hg] -> 1 + 2 decimals
        ((15700, -2, 0.45359237), 71.214),  # 0.01 lb = 0.0045 kg -> 3 + 2 decimals (71.21400)
        ((33, 0, 1000 / 1024), 32.227),  # 1/1024 s = 0.977 ms -> 1 + 2 decimals
        ((55, -4, 18015.6), 99.09),  # 5.5 mmol/L; 1e-4 mol/L = 1.8 mg/dL -> 0 + 2 decimals
        ((100, -5, 100000.0), 100.0),
        ((986, -1, 5 / 9, -160 / 9), 37.0),  # 98.6 F
        ((5, 1, 7.50061683), 375.0),  # 50 kPa; 10 kPa = 75 mm[Hg] -> -1 + 2 decimals
    ],
)
def test_scale_rounding_rule(args: tuple[float, ...], expected: float) -> None:
    assert scale(*args) == expected  # type: ignore[arg-type]

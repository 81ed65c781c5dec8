"""``vigil edge decode``: through typer's runner, and once through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["decode", *args])
    return result.exit_code, result.stdout, result.stderr


def test_heart_rate_vector() -> None:
    code, out, err = _run("2A37", "1E 55 32 00 21 00")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "readings": [
            {
                "metric": "heart_rate",
                "value": 85.0,
                "unit": "/min",
                "absent_reason": None,
                "device_time": None,
                "device_time_fields": None,
                "time_offset_minutes": None,
                "sequence": None,
                "user_id": None,
                "flags": ["sensor_contact:detected"],
            },
            {
                "metric": "rr_interval",
                "value": 32.227,
                "unit": "ms",
                "absent_reason": None,
                "device_time": None,
                "device_time_fields": None,
                "time_offset_minutes": None,
                "sequence": None,
                "user_id": None,
                "flags": ["sensor_contact:detected"],
            },
        ]
    }
    assert out.count("\n") == 1  # exactly one JSON object on one line


@pytest.mark.parametrize("characteristic", ["2A37", "2a37", "0x2A37", "0X2a37"])
@pytest.mark.parametrize("payload", ["1E 55 32 00 21 00", "1E5532002100", " 1e 5532 0021 00 "])
def test_argument_spellings(characteristic: str, payload: str) -> None:
    code, out, _ = _run(characteristic, payload)
    assert code == 0
    assert [r["value"] for r in json.loads(out)["readings"]] == [85.0, 32.227]


def test_bp_with_unknown_year_prints_null_device_time_and_the_fields() -> None:
    code, out, _ = _run("2A35", "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00")
    assert code == 0
    readings = json.loads(out)["readings"]
    assert [(r["metric"], r["value"], r["unit"]) for r in readings] == [
        ("bp_systolic", 138.0, "mm[Hg]"),
        ("bp_diastolic", 88.0, "mm[Hg]"),
        ("bp_mean", 120.0, "mm[Hg]"),
        ("heart_rate", 60.0, "/min"),
    ]
    for reading in readings:
        assert reading["device_time"] is None
        assert reading["device_time_fields"] == {
            "year": None,
            "month": 4,
            "day": 17,
            "hours": 20,
            "minutes": 41,
            "seconds": 59,
        }
        assert reading["user_id"] == 1
        assert reading["flags"] == [
            "body_movement",
            "cuff_too_loose",
            "device_time_incomplete",
            "improper_position",
            "irregular_pulse",
        ]


def test_glucose_device_time_is_iso_without_offset_or_zone() -> None:
    code, out, _ = _run("0x2A18", "1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01")
    assert code == 0
    [reading] = json.loads(out)["readings"]
    assert reading["device_time"] == "2019-02-27T11:05:30"
    assert reading["time_offset_minutes"] == -5
    assert reading["sequence"] == 1
    assert reading["value"] == 3000000.0
    assert reading["unit"] == "mg/dL"


def test_thermometer_device_time() -> None:
    code, out, _ = _run("2A1C", "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04")
    assert code == 0
    [reading] = json.loads(out)["readings"]
    assert (reading["value"], reading["unit"], reading["device_time"]) == (37.6, "Cel", "2012-12-05T11:50:27")
    assert reading["flags"] == ["site:finger"]


def test_glucose_measurement_context() -> None:
    # Nordic's full context vector: HbA1c 34.5 %, meal casual, sequence 0.
    code, out, err = _run("2A34", "FF 00 00 B3 03 64 00 04 12 3C 00 32 04 D2 F4 59 F1")
    assert (code, err) == (0, "")
    [reading] = json.loads(out)["readings"]
    assert (reading["metric"], reading["value"], reading["unit"]) == ("hba1c", 34.5, "%")
    assert (reading["sequence"], reading["device_time"], reading["flags"]) == (0, None, ["meal_casual"])
    code, out, _ = _run("2a34", "02 01 00 01")  # a meal only: no reading of its own
    assert (code, json.loads(out)) == (0, {"readings": []})
    code, _, err = _run("2A34", "02 01 00 07")
    assert (code, err.startswith("error: reserved_value: 0x2A34: field meal")) == (2, True)


def test_salvaged_values_print_their_flags() -> None:
    code, out, _ = _run("2A37", "10 50 04")  # an odd RR byte
    assert code == 0
    assert [(r["metric"], r["value"], r["flags"]) for r in json.loads(out)["readings"]] == [
        ("heart_rate", 80.0, ["rr_truncated", "sensor_contact:unsupported"])
    ]
    code, out, _ = _run("2A1C", "06 B0 0E 00 FE DC 07 02 1F 0B 32 1B 04")  # 31 February
    [reading] = json.loads(out)["readings"]
    assert (code, reading["device_time"], reading["device_time_fields"]) == (0, None, None)
    assert reading["flags"] == ["device_time_invalid", "site:finger"]


def test_special_value_prints_null_and_absent_reason() -> None:
    code, out, _ = _run("2A5F", "00 FF 07 5A 00")
    assert code == 0
    spo2, _hr = json.loads(out)["readings"]
    assert (spo2["value"], spo2["absent_reason"]) == (None, "not-a-number")


def test_value_without_readings() -> None:
    code, out, _ = _run("2A36", "00 96 00 FF 07 FF 07")
    assert (code, json.loads(out)) == (0, {"readings": []})


@pytest.mark.parametrize(
    ("characteristic", "payload", "message"),
    [
        ("2A35", "1E 8A", "error: truncated: 0x2A35: "),
        ("2A37", "00 50 00", "error: trailing_bytes: 0x2A37: "),
        ("2A37", "", "error: truncated: 0x2A37: "),
        ("2A00", "00", "error: unknown_characteristic: 0x2A00: "),
        ("2A37", "zz", "error: HEX must be hexadecimal bytes"),
        ("2A37", "1E5", "error: HEX must be hexadecimal bytes"),
        ("12345", "00", "error: CHARACTERISTIC must be"),
        ("heart", "00", "error: CHARACTERISTIC must be"),
    ],
)
def test_undecodable_input_exits_2_with_one_line_on_stderr(characteristic: str, payload: str, message: str) -> None:
    code, out, err = _run(characteristic, payload)
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1


def _vigil() -> str:
    script = shutil.which("vigil", path=str(Path(sys.executable).parent))
    assert script is not None, "the vigil console script is not installed in this environment"
    return script


def test_the_installed_console_script() -> None:
    ok = subprocess.run(
        [_vigil(), "edge", "decode", "2A9D", "01 54 3D"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (ok.returncode, ok.stderr) == (0, "")
    [reading] = json.loads(ok.stdout)["readings"]
    assert (reading["metric"], reading["value"], reading["unit"]) == ("body_weight", 71.214, "kg")

    bad = subprocess.run(
        [_vigil(), "edge", "decode", "2A9D", "01 54"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith("error: truncated: 0x2A9D: ")
    assert bad.stderr.count("\n") == 1

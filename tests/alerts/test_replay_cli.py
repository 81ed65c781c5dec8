"""``vigil alerts replay`` as users run it: a subprocess, JSON lines on stdout, errors naming the line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.cohort import generate, write

T0 = datetime(2026, 2, 1, 7, 0, tzinfo=UTC)


def replay(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil_cli", "alerts", "replay", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=240,
        check=False,
    )


def csv_of(rows: list[tuple[str, datetime, str, float]], header: str = "patient_id,time,metric,value") -> str:
    return header + "\n" + "".join(f"{p},{t.isoformat()},{m},{v}\n" for p, t, m, v in rows)


def test_every_opened_alert_is_one_json_line_and_nothing_else_goes_to_stdout(tmp_path: Path) -> None:
    rows = [
        ("p1", T0, "spo2", 97),
        ("p1", T0 + timedelta(hours=1), "spo2", 91),
        ("p1", T0 + timedelta(hours=2), "spo2", 90),  # confirmed: the same high alert (not a second line)
        ("p1", T0 + timedelta(hours=3), "spo2", 89),
        ("p2", T0 + timedelta(hours=1), "glucose", 48),  # level 2 hypoglycaemia: critical at once
        ("p2", T0 + timedelta(hours=2), "bp_systolic", 225),
    ]
    path = tmp_path / "r.csv"
    path.write_text(csv_of(rows))
    done = replay(str(path), "--no-anomaly")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    # Issue 14: the SpO2 alert opens at the first low reading, unconfirmed (asking for a repeat).
    assert [(a["patient_id"], a["kind"], a["metric"], a["severity"], a["unconfirmed"]) for a in lines] == [
        ("p1", "threshold", "spo2", "high", True),
        ("p2", "threshold", "glucose", "critical", False),
        ("p2", "threshold", "bp_systolic", "critical", False),
    ]
    first = lines[0]
    assert first["opened_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert [e["value"] for e in first["evidence"]] == [91]
    assert first["detail"]["remeasure"] == ["spo2"]
    assert set(first) >= {"patient_id", "kind", "metric", "severity", "opened_at", "evidence"}
    assert "replayed 6 readings" in done.stderr


def test_unsorted_input_other_offsets_and_stdin() -> None:
    rows = (
        "patient_id,time,metric,value\n"
        "x9,2026-02-01T09:00:00+02:00,heart_rate,38\n"
        "x9,2026-02-01T06:30:00Z,heart_rate,39\n"
    )
    done = replay("-", "--no-anomaly", stdin=rows)
    assert done.returncode == 0, done.stderr
    (alert,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (alert["patient_id"], alert["metric"], alert["severity"]) == ("x9", "heart_rate", "high")
    # Opened (unconfirmed) by 06:30Z, the earlier reading though it came second; 09:00+02:00 (07:00Z)
    # confirmed it and is no new line.
    assert alert["opened_at"] == "2026-02-01T06:30:00+00:00"
    assert [e["time"] for e in alert["evidence"]] == ["2026-02-01T06:30:00+00:00"]


BAD_ROWS = [
    ("p1,yesterday,spo2,97", "time is not ISO 8601"),
    ("p1,2026-02-01T07:00:00Z,shoe_size,9", "unknown metric 'shoe_size'"),
    ("p1,2026-02-01T07:00:00Z,spo2,ninety", "value is not a number"),
    ("p1,2026-02-01T07:00:00Z,spo2,150", "spo2 value outside the plausible range [20, 100] %"),
    (",2026-02-01T07:00:00Z,spo2,97", "patient_id is empty or longer than 128 characters"),
    ("p1,2026-02-01T07:00:00Z", "expected at least 4 columns, found 2"),
]


def test_bad_rows_reject_the_file_and_each_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    body = "".join(f"{line}\n" for line, _ in BAD_ROWS)
    path.write_text(f"patient_id,time,metric,value\np1,2026-02-01T06:00:00Z,spo2,97\n{body}")
    done = replay(str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    for n, (_, why) in enumerate(BAD_ROWS, start=3):
        assert f"bad.csv: line {n}: {why}\n" in done.stderr


def test_bad_header_and_skip_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("patient,when,what,value\n")
    done = replay(str(path))
    assert done.returncode == 2
    assert "line 1: header lacks patient_id, time, metric" in done.stderr
    path.write_text("value,metric,time,patient_id,extra\n53,glucose,2026-02-01T07:00:00Z,p1,x\nbad,glucose,nope,p1,x\n")
    done = replay(str(path), "--skip-bad-rows", "--no-anomaly")
    assert done.returncode == 0, done.stderr
    assert "skipped:" in done.stderr
    assert "line 3" in done.stderr
    assert json.loads(done.stdout)["severity"] == "critical"


def test_cohort_replay_with_anomaly_models_and_patient_settings(tmp_path: Path) -> None:
    cohort = generate(7, quiet=2, per_kind=0, days=40)
    # One slow deterioration the population thresholds do not see: pulse up 25 over 10 days.
    pid = cohort.patients[0].patient_id
    start = cohort.start + timedelta(days=28)
    cohort.readings = [
        (
            p,
            t,
            m,
            v
            + (min((t - start) / timedelta(days=10), 1.0) * 25 if p == pid and m == "heart_rate" and t > start else 0),
        )
        for p, t, m, v in cohort.readings
    ]
    write(cohort, tmp_path)
    done = replay(str(tmp_path / "readings.csv"), "--patients", str(tmp_path / "patients.json"))
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines()]
    anomalies = [a for a in alerts if a["kind"] == "anomaly" and a["patient_id"] == pid]
    assert anomalies, alerts
    feature = anomalies[0]["detail"]["features"][0]
    assert feature["feature"] == "heart_rate"
    assert feature["z"] >= 4
    assert feature["value"] > feature["baseline_median"]
    # The model only ever saw data from before the reading it judged.
    assert anomalies[0]["detail"]["trained_through"] <= anomalies[0]["opened_at"]

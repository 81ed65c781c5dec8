"""The organisation's monthly rows as JSON and CSV (with formula-injection guard)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from clinician_api.billing import (
    COLUMNS,
    Episode,
    PatientBilling,
    ReadingDay,
    SetupEvent,
    TimeEntry,
    TimeKind,
    csv_text,
    org_month_rows,
)

ZONE = ZoneInfo("Europe/Berlin")


def patients() -> list[PatientBilling]:
    start = date(2026, 3, 1)
    setup = SetupEvent(datetime(2026, 3, 1, 9, tzinfo=UTC), "n")
    full = PatientBilling(
        "pat-b",
        "org1",
        Episode(start, None, setup),
        [ReadingDay(start + timedelta(days=i), 2) for i in range(20)],
        [TimeEntry("n", datetime(2026, 3, 5, 9, tzinfo=UTC), 45, TimeKind.INTERACTIVE_COMMUNICATION)],
    )
    short = PatientBilling("=cmd|' /C calc'!A0", "org1", Episode(start), [ReadingDay(start, 1)])
    return [full, short]


def test_rows_for_an_organisation_and_month() -> None:
    rows = org_month_rows(patients(), 2026, 3, zone=ZONE, as_of=date(2026, 4, 1))
    assert all(tuple(r) == COLUMNS for r in rows)
    assert next(r["patient_id"] for r in rows) == "=cmd|' /C calc'!A0"  # sorted by id
    full = {r["code"]: r for r in rows if r["patient_id"] == "pat-b"}
    assert set(full) == {"99453", "99454", "99445", "99470", "99457", "99458"}
    assert (full["99454"]["eligible"], full["99457"]["eligible"], full["99458"]["units"]) == (True, True, 1)
    assert full["99454"]["period_start"] == "2026-03-01"
    assert full["99454"]["period_end"] == "2026-03-30"
    assert full["99454"]["final"] is True
    json.dumps(rows)  # JSON-ready as is


def test_csv_has_a_header_and_guards_formulas() -> None:
    rows = org_month_rows(patients(), 2026, 3, zone=ZONE, as_of=date(2026, 4, 1))
    text = csv_text(rows)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == list(COLUMNS)
    assert len(parsed) == len(rows) + 1
    hostile = [row for row in parsed[1:] if "calc" in row[1]]
    assert hostile
    assert all(row[1].startswith("'=") for row in hostile)
    ok = next(row for row in parsed[1:] if row[1] == "pat-b" and row[6] == "99454")
    assert ok[5:9] == ["true", "99454", "true", "1"]
    assert "\r\n" in text

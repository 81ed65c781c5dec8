"""Rows of an organisation's monthly billing evidence, for JSON and CSV.

One row per patient, period and code. CSV cells are guarded against formula injection: a text
cell that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return) is prefixed with ``'`` (OWASP's advice), so a hostile id or name in the
organisation's data cannot execute in the billing office's spreadsheet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date
from typing import Final
from zoneinfo import ZoneInfo

from clinician_api.billing.evaluate import evaluate_for_month
from clinician_api.billing.model import Evaluation, PatientBilling

__all__ = ["COLUMNS", "Row", "csv_text", "org_month_rows", "rows"]

COLUMNS: Final = (
    "org_id",
    "patient_id",
    "basis",
    "period_start",
    "period_end",
    "final",
    "code",
    "eligible",
    "units",
    "evidence",
    "missing",
)
Row = dict[str, str | int | bool | None]
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")


def rows(evaluations: Iterable[Evaluation]) -> list[Row]:
    """JSON-ready rows (dates as ISO strings), in the order given."""
    return [
        {
            "org_id": ev.org_id,
            "patient_id": ev.patient_id,
            "basis": str(ev.basis),
            "period_start": ev.start.isoformat(),
            "period_end": ev.end.isoformat(),
            "final": ev.final,
            "code": code.code,
            "eligible": code.eligible,
            "units": code.units,
            "evidence": code.evidence,
            "missing": code.missing,
        }
        for ev in evaluations
        for code in ev.codes
    ]


def org_month_rows(
    patients: Iterable[PatientBilling], year: int, month: int, *, zone: ZoneInfo, as_of: date
) -> list[Row]:
    """Every patient's rows for one month, patients in id order."""
    ordered = sorted(patients, key=lambda p: p.patient_id)
    return rows(ev for p in ordered for ev in evaluate_for_month(p, year, month, zone=zone, as_of=as_of))


def _cell(value: str | int | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA):
        return "'" + text
    return text


def csv_text(report: Iterable[Row]) -> str:
    """RFC 4180 CSV with a header row (CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in report:
        writer.writerow([_cell(row[c]) for c in COLUMNS])
    return out.getvalue()

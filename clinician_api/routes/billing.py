"""``GET /api/v1/billing/{month}``: the organisation's CMS RPM billing evidence for a calendar month
(practice time zone), as JSON or CSV (``format=csv``), from :mod:`clinician_api.billing`.

Per patient with a monitoring episode overlapping the month: set-up (99453) when the episode's
first 30-day period belongs to the month, each device-supply period (99454/99445) that ends in it
or is in progress today, and the month's management time (99470/99457/99458) from the time
entries. Only device-transmitted readings count toward days (every stored reading is; see
store.report_views). Admins only; one audit row listing the patients shown.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel

from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.billing import (
    Capture,
    Episode,
    PatientBilling,
    ReadingDay,
    SetupEvent,
    TimeEntry,
    TimeKind,
    csv_text,
    org_month_rows,
)
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Invalid
from clinician_api.routes.time import practice_zone
from clinician_api.security import Principal, require
from store import report_views
from store import time_entries as time_store
from store.connection import Connection

__all__ = ["router"]

router = APIRouter(prefix="/billing", tags=["billing"])

BillingReader = Annotated[Principal, Depends(require(Permission.BILLING_READ))]
# Reading days are needed from the start of the first 30-day period that can end in the month.
_LOOKBACK = timedelta(days=31)


class BillingRow(BaseModel):
    org_id: str
    patient_id: str
    basis: str
    period_start: str
    period_end: str
    final: bool
    code: str
    eligible: bool
    units: int
    evidence: str
    missing: str | None


class BillingReport(BaseModel):
    org_id: str
    month: str
    time_zone: str
    as_of: date
    patients: int
    rows: list[BillingRow]


def _month(text: str) -> date:
    try:
        year, month = (int(p) for p in text.split("-"))
        return date(year, month, 1)
    except ValueError as exc:
        raise Invalid("month is YYYY-MM", field="month", code="bad_month") from exc


def _last_day(first: date) -> date:
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def _inputs(conn: Connection, org_id: str, first: date, zone: ZoneInfo) -> list[PatientBilling]:
    last = _last_day(first)
    episodes = report_views.billing_episodes(conn, org_id, first=first - _LOOKBACK, last=last)
    ids = [e.patient_id for e in episodes]
    start = datetime.combine(first - _LOOKBACK, time(), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
    days = report_views.reading_day_counts(conn, org_id, ids, zone=zone.key, start=start, end=end)
    month_start = datetime.combine(first, time(), tzinfo=zone)
    entries: dict[str, list[TimeEntry]] = {p: [] for p in ids}
    for t in time_store.entries_for_org(conn, org_id, start=month_start, end=end):
        if t.patient_id in entries and t.minutes is not None:
            entries[t.patient_id].append(
                TimeEntry(t.clinician_id, t.started_at, t.minutes, TimeKind(t.kind), Capture(t.capture))
            )
    return [
        PatientBilling(
            patient_id=e.patient_id,
            org_id=org_id,
            episode=Episode(
                start=e.start_date,
                end=e.end_date,
                setup=SetupEvent(e.setup_at, e.setup_by) if e.setup_at is not None and e.setup_by else None,
            ),
            days=[ReadingDay(day, n) for day, n in days[e.patient_id]],
            time=entries[e.patient_id],
        )
        for e in episodes
    ]


@router.get(
    "/{month}",
    response_model=BillingReport,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    summary="CMS RPM billing evidence of a month (JSON, or CSV with format=csv)",
)
def billing_report(
    who: BillingReader,
    conn: Db,
    svc: Svc,
    info: Info,
    month: Annotated[str, Path(pattern=r"^2\d{3}-(0[1-9]|1[0-2])$", description="YYYY-MM")],
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response | BillingReport:
    first = _month(month)
    with recorded(
        conn, who, info, svc.clock, action="billing.read", object_type="billing_report", object_id=month, basis="org"
    ) as rec:
        zone = practice_zone(conn, who.org_id)
        patients = _inputs(conn, who.org_id, first, zone)
        rec.subjects = [p.patient_id for p in patients]
    as_of = svc.clock.now().astimezone(zone).date()
    rows = org_month_rows(patients, first.year, first.month, zone=zone, as_of=as_of)
    if format == "csv":
        return Response(
            csv_text(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="vigil-billing-{who.org_id}-{month}.csv"'},
        )
    return BillingReport(
        org_id=who.org_id,
        month=month,
        time_zone=zone.key,
        as_of=as_of,
        patients=len(patients),
        rows=[BillingRow.model_validate(r) for r in rows],
    )

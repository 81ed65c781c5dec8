"""``/api/v1/patients``: the caller's panel sorted by risk, a patient's page, vitals charts, and
break-glass access. Every call writes one audit row in the transaction of its reads."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from clinician_api.access import Resolved, guard
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Invalid
from clinician_api.etag import etag_for, not_modified
from clinician_api.pagination import Page
from clinician_api.routes.patient_data import (
    DeviceOut,
    VitalOut,
    breakglass,
    device_dicts,
    devices,
    floor_to,
    latest_vital_dicts,
    latest_vitals,
    panel_page,
)
from clinician_api.security import Principal, require
from rpm_core.clock import ensure_utc
from rpm_core.metrics import CATALOGUE
from store import clinician_views as views
from store import summaries
from store.readings import series

__all__ = ["router"]

router = APIRouter(prefix="/patients", tags=["patients"])

PanelReader = Annotated[Principal, Depends(require(Permission.PANEL_READ))]
Patient = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.PANEL_READ))]
PatientInOrg = Annotated[Resolved, Depends(guard("patient_in_org", "patient_id", Permission.BREAK_GLASS))]

_SPAN: Final = {"raw": timedelta(days=31), "hourly": timedelta(days=366), "daily": timedelta(days=3660)}
_BUCKET: Final = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}


class PanelPatient(BaseModel):
    patient_id: str
    display_name: str
    open_alerts: int
    max_severity: Literal["low", "medium", "high", "critical"] | None
    oldest_unacknowledged_at: datetime | None
    news2: int | None
    latest: list[VitalOut]
    adherence_days: int = Field(description="Days of the last 30 (UTC) with at least one reading.")
    devices: list[DeviceOut]


class TeamRef(BaseModel):
    team_id: str
    name: str


class PatientDetail(BaseModel):
    patient_id: str
    display_name: str
    mrn: str | None
    birth_date: date | None
    care_teams: list[TeamRef]
    access: Literal["self", "panel", "break_glass"]
    open_alerts: int
    latest: list[VitalOut]
    devices: list[DeviceOut]


class ChartPoint(BaseModel):
    t: datetime
    avg: float
    min: float
    max: float
    count: int
    device_id: str | None = None
    flags: list[str] | None = None


class Chart(BaseModel):
    patient_id: str
    metric: str
    unit: str
    resolution: Literal["raw", "hourly", "daily"]
    start: datetime
    end: datetime
    truncated: bool = Field(description="Raw points beyond api_chart_max_points were left out: ask hourly.")
    points: list[ChartPoint]


class BreakGlassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=10, max_length=1000)
    minutes: int = Field(default=30, ge=5, le=1440)


class BreakGlassOut(BaseModel):
    grant_id: str
    patient_id: str
    expires_at: datetime


@router.get(
    "",
    response_model=Page[PanelPatient],
    summary="My panel, riskiest first",
    description="Each patient's 7-day sparklines are served separately, for a page's patients at once: "
    "`GET /sparklines?patient=…`.",
)
def panel(
    who: PanelReader,
    conn: Db,
    svc: Svc,
    info: Info,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    # Serialised once, from plain data (see ``patient_data.latest_vital_dicts``); response_model
    # documents it, and the tests hold the body to it.
    body = panel_data(who, conn, svc, info, limit=limit, cursor=cursor)
    return Response(to_json(body), media_type="application/json")


def panel_of(who: Principal, conn: Db, svc: Svc, info: Info, *, limit: int, cursor: str | None) -> Page[PanelPatient]:
    """One page of the caller's panel as models (the HTML page), audited like the API's."""
    return Page[PanelPatient].model_validate(panel_data(who, conn, svc, info, limit=limit, cursor=cursor))


def panel_data(who: Principal, conn: Db, svc: Svc, info: Info, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of the caller's panel, audited (``panel.read`` listing the page's patients), as the
    plain data of a ``Page[PanelPatient]``."""
    limit = min(limit, svc.settings.api_page_max)
    with recorded(conn, who, info, svc.clock, action="panel.read", object_type="panel") as rec:
        rows, more = panel_page(conn, svc, who, limit=limit, cursor=cursor)
        rec.subjects = [r.patient_id for r in rows]
        items = _panel_items(conn, svc, who.org_id, rows)
    next_cursor = svc.cursors.encode("panel", who.user_id, rows[-1].key) if more else None
    return {"items": items, "next_cursor": next_cursor}


def _panel_items(conn: Db, svc: Svc, org_id: str, rows: list[views.PanelRow]) -> list[dict[str, Any]]:
    """The fields of :class:`PanelPatient`, in its order."""
    ids = [r.patient_id for r in rows]
    latest = latest_vital_dicts(conn, org_id, ids)  # brings the summaries up to date first
    adherence = summaries.adherence(conn, org=org_id, patients=ids, now=svc.clock.now()) if ids else {}
    devs = device_dicts(conn, ids)
    return [
        {
            "patient_id": r.patient_id,
            "display_name": r.display_name,
            "open_alerts": r.open_alerts,
            "max_severity": r.max_severity,
            "oldest_unacknowledged_at": r.oldest_unacknowledged_at,
            "news2": r.news2,
            "latest": latest.get(r.patient_id, []),
            "adherence_days": adherence.get(r.patient_id, 0),
            "devices": devs.get(r.patient_id, []),
        }
        for r in rows
    ]


@router.get("/{patient_id}", response_model=PatientDetail)
def patient_detail(target: Patient, conn: Db, svc: Svc, info: Info) -> PatientDetail:
    who = target.caller
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="patient.read",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        row = views.patient(conn, target.object_id, target.org_id)
        if row is None:  # pragma: no cover - resolved a moment ago
            raise Invalid("the patient disappeared", code="gone")
        panel_row = views.panel(
            conn, org_id=target.org_id, user_id=None, patient_id=row.patient_id, after=None, limit=1
        )
        detail = PatientDetail(
            patient_id=row.patient_id,
            display_name=row.display_name,
            mrn=row.mrn,
            birth_date=row.birth_date,
            care_teams=[
                TeamRef(team_id=t, name=n) for t, n in views.patient_teams(conn, row.patient_id, target.org_id)
            ],
            access=target.basis,
            open_alerts=panel_row[0].open_alerts if panel_row else 0,
            latest=latest_vitals(conn, target.org_id, [row.patient_id]).get(row.patient_id, []),
            devices=devices(conn, [row.patient_id]).get(row.patient_id, []),
        )
    return detail


@router.get(
    "/{patient_id}/vitals/{metric}",
    response_model=Chart,
    responses={304: {"description": "Not modified (If-None-Match matched the ETag)"}},
    summary="A metric over a time range, raw or rolled up (ETag)",
)
def vitals_chart(
    target: Patient,
    metric: str,
    conn: Db,
    svc: Svc,
    info: Info,
    start: datetime | None = None,
    end: datetime | None = None,
    resolution: Literal["raw", "hourly", "daily"] = "hourly",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    if metric not in CATALOGUE:
        raise Invalid(f"unknown metric; one of {', '.join(sorted(CATALOGUE))}", field="metric", code="unknown_metric")
    t1, t0 = _range(svc.clock.now(), start, end, resolution)
    who = target.caller
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="vitals.read",
        object_type="vitals",
        object_id=f"{target.object_id}/{metric}",
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        chart = _chart(conn, svc, target, metric, t0, t1, resolution)
        body = chart.model_dump_json().encode()
        etag = etag_for(body)
    headers = {"ETag": etag, "Cache-Control": "private, no-store"}
    if not_modified(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _range(now: datetime, start: datetime | None, end: datetime | None, resolution: str) -> tuple[datetime, datetime]:
    """(end, start), validated and, for rollups, widened to whole buckets."""
    try:
        t1 = ensure_utc(end) if end else now
        t0 = ensure_utc(start) if start else t1 - timedelta(days=7)
    except ValueError as exc:
        raise Invalid("start and end need a time zone", field="start", code="naive_time") from exc
    if t0 >= t1:
        raise Invalid("start must be before end", field="start", code="bad_range")
    if t1 - t0 > _SPAN[resolution]:
        raise Invalid(
            f"a {resolution} chart spans at most {_SPAN[resolution].days} days", field="start", code="bad_range"
        )
    step = _BUCKET.get(resolution)
    if step is not None:
        t0 = floor_to(t0, step)
        t1 = floor_to(t1, step) + (step if floor_to(t1, step) != t1 else timedelta(0))
    return t1, t0


def _chart(conn: Db, svc: Svc, target: Resolved, metric: str, t0: datetime, t1: datetime, resolution: str) -> Chart:
    points: list[ChartPoint]
    truncated = False
    if resolution == "raw":
        cap = svc.settings.api_chart_max_points
        raw = views.raw_series(
            conn, org_id=target.org_id, patient_id=target.object_id, metric=metric, start=t0, end=t1, limit=cap + 1
        )
        truncated = len(raw) > cap
        points = [
            ChartPoint(
                t=p.time, avg=p.value, min=p.value, max=p.value, count=1, device_id=p.device_id, flags=list(p.flags)
            )
            for p in raw[:cap]
        ]
    else:
        buckets = series(
            conn,
            svc.flavor,
            org=target.org_id,
            patient=target.object_id,
            metric=metric,
            start=t0,
            end=t1,
            bucket=_BUCKET[resolution],
        )
        points = [ChartPoint(t=b.start, avg=b.avg, min=b.min, max=b.max, count=b.count) for b in buckets]
    return Chart(
        patient_id=target.object_id,
        metric=metric,
        unit=CATALOGUE[metric].unit,
        resolution=resolution,
        start=t0,
        end=t1,
        truncated=truncated,
        points=points,
    )


@router.post(
    "/{patient_id}/break-glass",
    response_model=BreakGlassOut,
    status_code=201,
    summary="Open a patient outside my panel, with a reason, for a limited time",
)
def break_glass(body: BreakGlassIn, target: PatientInOrg, conn: Db, svc: Svc, info: Info) -> BreakGlassOut:
    who = target.caller
    minutes = min(body.minutes, svc.settings.api_break_glass_max_min)
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="break_glass.grant",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis="break_glass",
    ) as rec:
        rec.reason = body.reason
        grant = breakglass(conn, svc, who, target.object_id, body.reason, minutes)
    return BreakGlassOut(grant_id=grant.grant_id, patient_id=grant.patient_id, expires_at=grant.expires_at)

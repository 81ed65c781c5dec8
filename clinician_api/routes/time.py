"""Time tracking for CMS management codes: a timer on the patient page (start, stop; kinds review,
interactive communication, care planning) and manual entries with a reason. An entry is editable
and deletable by its author for one day after it was made (``EDIT_WINDOW``); every change keeps
the previous version (``time_entry_revisions``) and writes one audit row.

A user has at most one running timer (starting a second is a 409 that names the running entry);
stopping counts whole minutes (rounded down). Months are the practice's calendar months
(``organizations.time_zone``), as billing counts them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from clinician_api.access import Denied, Resolved, guard, patient_basis, register
from clinician_api.audit import Recording, recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, RequestInfo, Services, Svc
from clinician_api.errors import Conflict, Forbidden, Invalid
from clinician_api.security import Principal
from rpm_core.clock import ensure_utc
from store import enrolment
from store import time_entries as store
from store.connection import Connection
from store.time_entries import TimeEntryRow

__all__ = ["EDIT_WINDOW", "month_bounds", "practice_zone", "router"]

router = APIRouter(tags=["time"])

EDIT_WINDOW: Final = timedelta(days=1)
Kind = Literal["review", "interactive_communication", "care_planning"]


@register("time_entry")
def _time_entry(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    row = store.get_entry(conn, raw)
    if row is None or row.deleted_at is not None:
        return Denied()
    basis = patient_basis(conn, who, row.patient_id, now) if row.org_id == who.org_id else None
    if basis is None:
        return Denied(row.patient_id)
    return Resolved("time_entry", row.entry_id, row.org_id, row.patient_id, basis, row)


TimeReader = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.TIME_READ))]
TimeWriter = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.TIME_WRITE))]
EntryWriter = Annotated[Resolved, Depends(guard("time_entry", "entry_id", Permission.TIME_WRITE))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimerIn(Strict):
    kind: Kind = "review"


class ManualIn(Strict):
    kind: Kind
    started_at: datetime
    minutes: int = Field(ge=1, le=1440)
    reason: str = Field(min_length=3, max_length=1000, description="Why the time was not captured by the timer.")


class EditIn(Strict):
    kind: Kind | None = None
    started_at: datetime | None = None
    minutes: int | None = Field(default=None, ge=0, le=1440)
    reason: str | None = Field(default=None, min_length=3, max_length=1000)


class TimeEntryOut(BaseModel):
    entry_id: str
    patient_id: str
    clinician_id: str
    kind: Kind
    capture: Literal["timer", "manual"]
    started_at: datetime
    ended_at: datetime | None
    minutes: int | None = Field(description="None while the timer runs.")
    reason: str | None
    editable_until: datetime


class TimeEntriesOut(BaseModel):
    month: str
    items: list[TimeEntryOut]
    next_cursor: str | None
    month_minutes: int = Field(description="All finished entries of the month, every clinician.")
    running: TimeEntryOut | None = Field(description="The caller's running timer on this patient.")


def _out(row: TimeEntryRow) -> TimeEntryOut:
    return TimeEntryOut(
        entry_id=row.entry_id,
        patient_id=row.patient_id,
        clinician_id=row.clinician_id,
        kind=row.kind,
        capture=row.capture,
        started_at=row.started_at,
        ended_at=row.ended_at,
        minutes=row.minutes,
        reason=row.reason,
        editable_until=row.created_at + EDIT_WINDOW,
    )


def practice_zone(conn: Connection, org_id: str) -> ZoneInfo:
    try:
        return ZoneInfo(enrolment.org_time_zone(conn, org_id))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def month_bounds(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants ``[first day 00:00, next month's first day 00:00)`` in ``zone``."""
    start = datetime(month.year, month.month, 1, tzinfo=zone)
    nxt = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=zone)
    return start, nxt


def _parse_month(text: str | None, today: date) -> date:
    if text is None:
        return today.replace(day=1)
    try:
        year, month = (int(p) for p in text.split("-"))
        return date(year, month, 1)
    except ValueError as exc:
        raise Invalid("month is YYYY-MM", field="month", code="bad_month") from exc


def _recorded(
    target: Resolved, conn: Connection, svc: Services, info: RequestInfo, action: str, object_id: str | None = None
) -> AbstractContextManager[Recording]:
    return recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=action,
        object_type="time_entry",
        object_id=object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    )


@router.get("/patients/{patient_id}/time-entries", response_model=TimeEntriesOut, summary="Time entries of a month")
def list_time(
    target: TimeReader,
    conn: Db,
    svc: Svc,
    info: Info,
    month: Annotated[str | None, Query(pattern=r"^2\d{3}-(0[1-9]|1[0-2])$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> TimeEntriesOut:
    who = target.caller
    zone = practice_zone(conn, target.org_id)
    first = _parse_month(month, svc.clock.now().astimezone(zone).date())
    start, end = month_bounds(first, zone)
    after = None
    kind = f"time:{target.object_id}:{first.isoformat()}"
    if cursor is not None:
        t, eid = svc.cursors.decode(kind, who.user_id, cursor)
        after = (datetime.fromisoformat(str(t)), str(eid))
    with _recorded(target, conn, svc, info, "time.read"):
        rows = store.list_entries(
            conn, target.object_id, target.org_id, start=start, end=end, after=after, limit=limit + 1
        )
        whole = store.list_entries(conn, target.object_id, target.org_id, start=start, end=end, after=None, limit=5000)
        running = store.running_timer(conn, who.user_id, who.org_id)
    page = rows[:limit]
    nxt = (
        svc.cursors.encode(kind, who.user_id, [page[-1].started_at.isoformat(), page[-1].entry_id])
        if len(rows) > limit
        else None
    )
    return TimeEntriesOut(
        month=first.strftime("%Y-%m"),
        items=[_out(r) for r in page],
        next_cursor=nxt,
        month_minutes=sum(r.minutes or 0 for r in whole),
        running=_out(running) if running is not None and running.patient_id == target.object_id else None,
    )


@router.post("/patients/{patient_id}/timer/start", response_model=TimeEntryOut, status_code=201)
def start_timer(body: TimerIn, target: TimeWriter, conn: Db, svc: Svc, info: Info) -> TimeEntryOut:
    who = target.caller
    with _recorded(target, conn, svc, info, "time.timer_start") as rec:
        running = store.running_timer(conn, who.user_id, who.org_id)
        if running is not None:
            raise Conflict(f"your timer {running.entry_id} is running: stop it first", code="timer_running")
        row = store.start_timer(
            conn,
            org_id=target.org_id,
            patient_id=target.object_id,
            clinician_id=who.user_id,
            kind=body.kind,
            now=svc.clock.now(),
        )
        rec.object_id = row.entry_id
    return _out(row)


@router.post("/patients/{patient_id}/timer/stop", response_model=TimeEntryOut)
def stop_timer(target: TimeWriter, conn: Db, svc: Svc, info: Info) -> TimeEntryOut:
    who = target.caller
    with _recorded(target, conn, svc, info, "time.timer_stop") as rec:
        running = store.running_timer(conn, who.user_id, who.org_id)
        if running is None or running.patient_id != target.object_id:
            raise Conflict("no timer of yours runs on this patient", code="no_timer")
        rec.object_id = running.entry_id
        row = store.stop_timer(conn, running.entry_id, now=svc.clock.now())
        if row is None:  # pragma: no cover - stopped by a concurrent request of the same user
            raise Conflict("the timer was stopped already", code="no_timer")
    return _out(row)


def _checked_time(started: datetime, minutes: int, now: datetime) -> datetime:
    try:
        at = ensure_utc(started)
    except ValueError as exc:
        raise Invalid("the time needs a zone", field="started_at", code="naive_time") from exc
    if at + timedelta(minutes=minutes) > now:
        raise Invalid("the entry ends in the future", field="started_at", code="in_future")
    return at


@router.post("/patients/{patient_id}/time-entries", response_model=TimeEntryOut, status_code=201)
def add_manual(body: ManualIn, target: TimeWriter, conn: Db, svc: Svc, info: Info) -> TimeEntryOut:
    who, now = target.caller, svc.clock.now()
    with _recorded(target, conn, svc, info, "time.manual_add") as rec:
        row = store.add_manual(
            conn,
            org_id=target.org_id,
            patient_id=target.object_id,
            clinician_id=who.user_id,
            kind=body.kind,
            started_at=_checked_time(body.started_at, body.minutes, now),
            minutes=body.minutes,
            reason=body.reason.strip(),
            now=now,
        )
        rec.object_id = row.entry_id
    return _out(row)


def _own_and_recent(target: Resolved, now: datetime) -> TimeEntryRow:
    row: TimeEntryRow = target.row
    if row.clinician_id != target.caller.user_id:
        raise Forbidden("only the author may change a time entry", code="not_author")
    if now - row.created_at > EDIT_WINDOW:
        raise Conflict("a time entry can be changed for one day after it was made", code="edit_window_closed")
    return row


@router.patch("/time-entries/{entry_id}", response_model=TimeEntryOut, summary="Edit my entry (for one day)")
def edit_entry(body: EditIn, target: EntryWriter, conn: Db, svc: Svc, info: Info) -> TimeEntryOut:
    who, now = target.caller, svc.clock.now()
    changes = body.model_dump(exclude_unset=True)
    if any(v is None for v in changes.values()):
        raise Invalid(
            "a field cannot be cleared", field=next(k for k, v in changes.items() if v is None), code="required"
        )
    with _recorded(target, conn, svc, info, "time.edit", target.object_id):
        row = _own_and_recent(target, now)
        locked = store.get_entry(conn, row.entry_id, for_update=True) or row
        if locked.capture == "timer" and locked.ended_at is None:
            raise Conflict("the timer is still running: stop it first", code="timer_running")
        started = changes.get("started_at", locked.started_at)
        minutes = changes.get("minutes", locked.minutes or 0)
        if "started_at" in changes or "minutes" in changes:
            changes["started_at"] = _checked_time(started, minutes, now)
        if locked.capture == "manual" and "reason" in changes:
            changes["reason"] = str(changes["reason"]).strip()
        updated = store.edit_entry(conn, locked, changes, by=who.user_id, now=now)
    return _out(updated)


@router.delete("/time-entries/{entry_id}", response_model=TimeEntryOut, summary="Delete my entry (for one day)")
def delete_entry(target: EntryWriter, conn: Db, svc: Svc, info: Info) -> TimeEntryOut:
    who, now = target.caller, svc.clock.now()
    with _recorded(target, conn, svc, info, "time.delete", target.object_id):
        row = _own_and_recent(target, now)
        store.delete_entry(conn, row, by=who.user_id, now=now)
    return _out(row)

"""``/api/v1/admin``: care teams and their panels, the organisation's patient roster, and the review
of break-glass access. Reads that list patients are audited like any other PHI read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from clinician_api import audit
from clinician_api.access import Resolved, guard
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import NotFound
from clinician_api.pagination import Page
from clinician_api.security import Principal, require
from store import care_teams, users
from store import clinician_views as views
from store.care_teams import GrantRow, TeamRow

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
Team = Annotated[Resolved, Depends(guard("care_team", "team_id", Permission.ADMIN))]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class TeamOut(BaseModel):
    team_id: str
    name: str
    created_at: datetime


class TeamDetail(TeamOut):
    members: list[str]


class RosterEntry(BaseModel):
    patient_id: str
    display_name: str


class GrantOut(BaseModel):
    grant_id: str
    user_id: str
    patient_id: str
    reason: str
    granted_at: datetime
    expires_at: datetime
    reviewed_at: datetime | None
    reviewed_by: str | None


class Changed(BaseModel):
    changed: bool


def _team(t: TeamRow) -> TeamOut:
    return TeamOut(team_id=t.team_id, name=t.name, created_at=t.created_at)


def _grant(g: GrantRow) -> GrantOut:
    return GrantOut(
        grant_id=g.grant_id,
        user_id=g.user_id,
        patient_id=g.patient_id,
        reason=g.reason,
        granted_at=g.granted_at,
        expires_at=g.expires_at,
        reviewed_at=g.reviewed_at,
        reviewed_by=g.reviewed_by,
    )


@router.get("/care-teams", response_model=list[TeamOut])
def list_teams(who: Admin, conn: Db) -> list[TeamOut]:
    return [_team(t) for t in care_teams.list_teams(conn, who.org_id)]


@router.post("/care-teams", response_model=TeamOut, status_code=201)
def create_team(body: TeamCreate, who: Admin, conn: Db, svc: Svc, info: Info) -> TeamOut:
    with recorded(conn, who, info, svc.clock, action="care_team.create", object_type="care_team") as rec:
        team = care_teams.create_team(conn, who.org_id, body.name, svc.clock.now())
        rec.object_id = team.team_id
    return _team(team)


@router.get("/care-teams/{team_id}", response_model=TeamDetail)
def get_team(target: Team, conn: Db) -> TeamDetail:
    team: TeamRow = target.row
    return TeamDetail(**_team(team).model_dump(), members=care_teams.team_members(conn, team))


@router.get("/care-teams/{team_id}/patients", response_model=Page[str], summary="The team's panel (patient ids)")
def team_patients(
    target: Team,
    conn: Db,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[str]:
    who = target.caller
    limit = min(limit, svc.settings.api_page_max)
    after = str(svc.cursors.decode("team_patients", who.user_id, cursor)[0]) if cursor else None
    ids = care_teams.team_patients(conn, target.row, after=after, limit=limit + 1)
    page = ids[:limit]
    nxt = svc.cursors.encode("team_patients", who.user_id, [page[-1]]) if len(ids) > limit else None
    return Page[str](items=page, next_cursor=nxt)


def _membership(target: Resolved, conn: Db, svc: Svc, info: Info, *, kind: str, member: str, add: bool) -> Changed:
    """Add or remove a member (kind 'user') or a panel patient (kind 'patient'); the member must be of
    the team's organisation, else 404 and a denied audit row."""
    team: TeamRow = target.row
    who = target.caller
    now = svc.clock.now()
    verb = "add" if add else "remove"
    patient = member if kind == "patient" else None
    known = (
        care_teams.patient_org(conn, member) == who.org_id
        if kind == "patient"
        else users.get_user(conn, member, org_id=who.org_id) is not None
    )
    if not known:
        audit.deny(
            conn, who, info, svc.clock, action=f"care_team.{verb}_{kind}", object_type=kind, object_id=member[:200]
        )
        raise NotFound()
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action=f"care_team.{verb}_{kind}",
        object_type="care_team",
        object_id=team.team_id,
        patient_id=patient,
    ) as rec:
        rec.reason = None if kind == "patient" else f"user {member[:64]}"
        if kind == "user":
            changed = (
                care_teams.add_member(conn, team, member, now) if add else care_teams.remove_member(conn, team, member)
            )
        else:
            changed = (
                care_teams.add_patient(conn, team, member, now)
                if add
                else care_teams.remove_patient(conn, team, member)
            )
    return Changed(changed=changed)


@router.put("/care-teams/{team_id}/members/{user_id}", response_model=Changed)
def add_member(user_id: str, target: Team, conn: Db, svc: Svc, info: Info) -> Changed:
    return _membership(target, conn, svc, info, kind="user", member=user_id, add=True)


@router.delete("/care-teams/{team_id}/members/{user_id}", response_model=Changed)
def remove_member(user_id: str, target: Team, conn: Db, svc: Svc, info: Info) -> Changed:
    return _membership(target, conn, svc, info, kind="user", member=user_id, add=False)


@router.put("/care-teams/{team_id}/patients/{patient_id}", response_model=Changed)
def add_patient(patient_id: str, target: Team, conn: Db, svc: Svc, info: Info) -> Changed:
    return _membership(target, conn, svc, info, kind="patient", member=patient_id, add=True)


@router.delete("/care-teams/{team_id}/patients/{patient_id}", response_model=Changed)
def remove_patient(patient_id: str, target: Team, conn: Db, svc: Svc, info: Info) -> Changed:
    return _membership(target, conn, svc, info, kind="patient", member=patient_id, add=False)


@router.get("/patients", response_model=Page[RosterEntry], summary="The organisation's patients (to build panels)")
def roster(
    who: Admin,
    conn: Db,
    svc: Svc,
    info: Info,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[RosterEntry]:
    limit = min(limit, svc.settings.api_page_max)
    after = str(svc.cursors.decode("roster", who.user_id, cursor)[0]) if cursor else None
    with recorded(conn, who, info, svc.clock, action="roster.read", object_type="roster", basis="org") as rec:
        rows = views.roster(conn, who.org_id, after=after, limit=limit + 1)
        page = rows[:limit]
        rec.subjects = [pid for pid, _ in page]
    nxt = svc.cursors.encode("roster", who.user_id, [page[-1][0]]) if len(rows) > limit else None
    return Page[RosterEntry](items=[RosterEntry(patient_id=p, display_name=n) for p, n in page], next_cursor=nxt)


@router.get("/break-glass", response_model=Page[GrantOut], summary="Break-glass accesses, newest first")
def list_break_glass(
    who: Admin,
    conn: Db,
    svc: Svc,
    info: Info,
    unreviewed: bool = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[GrantOut]:
    limit = min(limit, svc.settings.api_page_max)
    before = None
    if cursor:
        at, gid = svc.cursors.decode("break_glass", who.user_id, cursor)
        before = (datetime.fromisoformat(str(at)), str(gid))
    with recorded(conn, who, info, svc.clock, action="break_glass.read", object_type="break_glass", basis="org") as rec:
        rows = care_teams.list_grants(conn, who.org_id, unreviewed=unreviewed, before=before, limit=limit + 1)
        page = rows[:limit]
        rec.subjects = sorted({g.patient_id for g in page})
    last = page[-1] if page else None
    nxt = (
        svc.cursors.encode("break_glass", who.user_id, [last.granted_at.isoformat(), last.grant_id])
        if last and len(rows) > limit
        else None
    )
    return Page[GrantOut](items=[_grant(g) for g in page], next_cursor=nxt)


@router.post("/break-glass/{grant_id}/review", response_model=GrantOut)
def review_break_glass(grant_id: str, who: Admin, conn: Db, svc: Svc, info: Info) -> GrantOut:
    with conn.transaction():
        grant = care_teams.review_grant(conn, grant_id, org_id=who.org_id, by=who.user_id, now=svc.clock.now())
        if grant is not None:
            audit.security_event(
                conn, who, info, svc.clock, action="break_glass.review", outcome="success", object_id=grant.grant_id
            )
    if grant is None:
        audit.deny(
            conn, who, info, svc.clock, action="break_glass.write", object_type="break_glass", object_id=grant_id[:200]
        )
        raise NotFound()
    return _grant(grant)

"""The fleet (admins): every edge agent of the organisation with its last contact, outbox depth,
agent version, devices with battery, and the gaps it reported; revocation and reassignment;
one-time enrolment tokens, and their exchange for an enrollment bundle by ``vigil edge enroll
--url --token`` (``POST /api/v1/enrol``, the one route that needs no sign-in: the token is the
credential). Creating and revoking agents goes through the composition root's
:class:`~clinician_api.provisioning.Provisioner`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from clinician_api import audit
from clinician_api.access import Denied, Resolved, guard, register
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import NotFound, TooManyAttempts, Unauthenticated
from clinician_api.keys import new_secret, secret_hash
from clinician_api.pagination import Page
from clinician_api.provisioning import ProvisionedAgent, format_token, parse_token
from clinician_api.provisioning import require as provisioner_of
from clinician_api.security import Principal, require
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import patient_id as check_patient_id
from store import audit as audit_store
from store import care_teams, login_throttle
from store import enrolment_tokens as tokens
from store import fleet as fleet_store
from store.agents import assign_agent
from store.connection import Connection
from store.fleet import FleetAgent

__all__ = ["router"]

router = APIRouter(tags=["fleet"])

Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
# An exchange attempt that fails counts against the address; this many in the window lock it.
_EXCHANGE_FAILURES = 20


@register("agent")
def _agent(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    if len(raw) > 64:
        return Denied()
    row = fleet_store.agent_in_org(conn, raw, who.org_id)
    return Denied() if row is None else Resolved("agent", raw, row.org_id, row.patient_id, "org", row)


Agent = Annotated[Resolved, Depends(guard("agent", "agent_id", Permission.ADMIN))]


class DeviceOut(BaseModel):
    device_id: str
    profile: str | None
    manufacturer: str | None
    model: str | None
    firmware: str | None
    battery_pct: int | None
    last_seen_at: datetime | None


class GapsOut(BaseModel):
    ranges: int = Field(description="Sequence ranges the agent declared it will never deliver.")
    readings: int
    last_reported_at: datetime | None


class AgentOut(BaseModel):
    agent_id: str
    status: str
    patient_id: str | None
    created_at: datetime
    activated_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    agent_version: str | None
    outbox_depth: int | None = Field(description="Readings waiting on the Pi, from its latest status.")
    outbox_oldest: datetime | None
    status_at: datetime | None
    alarms: list[str]
    gaps: GapsOut
    devices: list[DeviceOut]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: str = Field(min_length=1, max_length=128)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: str = Field(min_length=1, max_length=128)
    ttl_minutes: int | None = Field(default=None, ge=5, le=7 * 24 * 60)


class TokenOut(BaseModel):
    token_id: str
    patient_id: str
    expires_at: datetime
    token: str = Field(description="Shown once; only its SHA-256 is kept.")
    command: str = Field(description="What to run on the Pi.")
    pinned: bool = Field(description="The token carries the API's TLS public-key pin.")


class TokenListItem(BaseModel):
    token_id: str
    patient_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    agent_id: str | None
    revoked_at: datetime | None


class ExchangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=10, max_length=300)


class ExchangeOut(BaseModel):
    agent_id: str
    bundle: dict[str, Any] = Field(description="The enrollment bundle: it holds credentials.")


def _out(a: FleetAgent, devices: list[fleet_store.FleetDevice]) -> AgentOut:
    return AgentOut(
        agent_id=a.agent_id,
        status=a.status,
        patient_id=a.patient_id,
        created_at=a.created_at,
        activated_at=a.activated_at,
        revoked_at=a.revoked_at,
        last_seen_at=a.last_seen_at,
        agent_version=a.agent_version,
        outbox_depth=a.outbox_depth,
        outbox_oldest=a.outbox_oldest,
        status_at=a.status_at,
        alarms=list(a.alarms or []),
        gaps=GapsOut(ranges=a.gap_ranges, readings=a.gap_readings, last_reported_at=a.last_gap_at),
        devices=[
            DeviceOut(
                device_id=d.device_id,
                profile=d.profile,
                manufacturer=d.manufacturer,
                model=d.model,
                firmware=d.firmware,
                battery_pct=d.battery_pct,
                last_seen_at=d.last_seen_at,
            )
            for d in devices
        ],
    )


@router.get("/admin/agents", response_model=Page[AgentOut], summary="The organisation's edge agents")
def list_agents(
    who: Admin,
    conn: Db,
    svc: Svc,
    info: Info,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[AgentOut]:
    after = str(svc.cursors.decode("fleet", who.user_id, cursor)[0]) if cursor else None
    with recorded(conn, who, info, svc.clock, action="fleet.read", object_type="fleet", basis="org") as rec:
        rows = fleet_store.fleet(conn, who.org_id, after=after, limit=limit + 1)
        page = rows[:limit]
        devices = fleet_store.devices_of_agents(conn, [a.agent_id for a in page])
        rec.subjects = sorted({a.patient_id for a in page if a.patient_id})
    nxt = svc.cursors.encode("fleet", who.user_id, [page[-1].agent_id]) if len(rows) > limit else None
    return Page[AgentOut](items=[_out(a, devices[a.agent_id]) for a in page], next_cursor=nxt)


def _agent_recorded(target: Resolved, conn: Connection, svc: Svc, info: Info, action: str) -> Any:
    return recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=action,
        object_type="agent",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis="org",
    )


@router.get("/admin/agents/{agent_id}", response_model=AgentOut)
def get_agent(target: Agent, conn: Db, svc: Svc, info: Info) -> AgentOut:
    with _agent_recorded(target, conn, svc, info, "agent.read"):
        devices = fleet_store.devices_of_agents(conn, [target.object_id])
    return _out(target.row, devices[target.object_id])


@router.post("/admin/agents/{agent_id}/revoke", response_model=AgentOut, summary="Revoke an agent")
def revoke(target: Agent, conn: Db, svc: Svc, info: Info) -> AgentOut:
    provisioner = provisioner_of(svc.provisioner)
    with _agent_recorded(target, conn, svc, info, "agent.revoke"):
        provisioner.revoke_agent(target.object_id, org_id=target.org_id)
        row = fleet_store.agent_in_org(conn, target.object_id, target.org_id) or target.row
        devices = fleet_store.devices_of_agents(conn, [target.object_id])
    return _out(row, devices[target.object_id])


def _patient_of_org(conn: Connection, who: Principal, info: Info, svc: Svc, raw: str, action: str) -> str:
    """A patient id of the caller's organisation, or a 404 and a denied audit row."""
    try:
        pid = check_patient_id(raw)
    except InvalidIdentifier:
        pid = None
    org = care_teams.patient_org(conn, pid) if pid else None
    if pid is None or org != who.org_id:
        real = pid if org is not None else None
        audit.deny(conn, who, info, svc.clock, action=action, object_type="patient", object_id=raw, patient_id=real)
        raise NotFound()
    return pid


@router.post("/admin/agents/{agent_id}/assign", response_model=AgentOut, summary="Assign an agent to a patient")
def assign(body: AssignIn, target: Agent, conn: Db, svc: Svc, info: Info) -> AgentOut:
    who = target.caller
    pid = _patient_of_org(conn, who, info, svc, body.patient_id, "agent.assign")
    with recorded(
        conn, who, info, svc.clock, action="agent.assign", object_type="agent", object_id=target.object_id,
        patient_id=pid, basis="org",
    ):  # fmt: skip
        assign_agent(conn, target.object_id, pid, now=svc.clock.now())
        row = fleet_store.agent_in_org(conn, target.object_id, target.org_id) or target.row
        devices = fleet_store.devices_of_agents(conn, [target.object_id])
    return _out(row, devices[target.object_id])


@router.post("/admin/enrolment-tokens", response_model=TokenOut, status_code=201, summary="A one-time enrolment token")
def create_token(body: TokenIn, who: Admin, conn: Db, svc: Svc, info: Info) -> TokenOut:
    pid = _patient_of_org(conn, who, info, svc, body.patient_id, "enrolment_token.create")
    now = svc.clock.now()
    ttl = timedelta(minutes=body.ttl_minutes or svc.settings.api_enrol_token_ttl_min)
    secret = new_secret()
    with recorded(
        conn, who, info, svc.clock, action="enrolment_token.create", object_type="enrolment_token", patient_id=pid,
        basis="org",
    ) as rec:  # fmt: skip
        row = tokens.create_token(
            conn,
            secret_sha256=secret_hash(secret),
            org_id=who.org_id,
            patient_id=pid,
            created_by=who.user_id,
            now=now,
            expires_at=now + ttl,
        )
        rec.object_id = row.token_id
    token = format_token(secret, svc.enrol_pin)
    url = (svc.settings.api_enrol_url or svc.settings.api_public_url).rstrip("/")
    return TokenOut(
        token_id=row.token_id,
        patient_id=pid,
        expires_at=row.expires_at,
        token=token,
        command=f"vigil edge enroll --url {url} --token {token}",
        pinned=bool(svc.enrol_pin),
    )


@router.get("/admin/enrolment-tokens", response_model=list[TokenListItem])
def list_tokens(who: Admin, conn: Db) -> list[TokenListItem]:
    return [
        TokenListItem(
            token_id=t.token_id,
            patient_id=t.patient_id,
            created_at=t.created_at,
            expires_at=t.expires_at,
            used_at=t.used_at,
            agent_id=t.agent_id or None,
            revoked_at=t.revoked_at,
        )
        for t in tokens.list_tokens(conn, who.org_id)
    ]


def _refuse_exchange(conn: Connection, svc: Svc, info: Info, secret: str | None) -> Unauthenticated:
    """Audit a refused exchange (why, in the audit only), count it against the address."""
    now = svc.clock.now()
    known = tokens.token_state(conn, secret_hash(secret)) if secret else None
    reason = "unknown_token"
    if known is not None:
        reason = "revoked" if known.revoked_at else "used" if known.used_at else "expired"
    with conn.transaction():
        login_throttle.record_failure(
            conn,
            f"enrol:{info.client_addr or 'unknown'}",
            now,
            window=timedelta(seconds=svc.settings.api_login_window_s),
            max_failures=_EXCHANGE_FAILURES,
            lockout=timedelta(seconds=svc.settings.api_login_lockout_s),
        )
        audit_store.append(
            conn,
            audit.entry(
                None, info, svc.clock, action="enrolment.exchange", object_type="enrolment_token", outcome="failed",
                object_id=known.token_id if known else None, patient_id=known.patient_id if known else None,
                reason=reason, org_id=known.org_id if known else None,
            ),
        )  # fmt: skip
    return Unauthenticated("the token is not valid, was used already or has expired", code="invalid_token")


@router.post("/enrol", response_model=ExchangeOut, summary="Exchange a one-time enrolment token for a bundle")
def exchange(body: ExchangeIn, conn: Db, svc: Svc, info: Info) -> JSONResponse:
    now = svc.clock.now()
    until = login_throttle.locked_until(conn, [f"enrol:{info.client_addr or 'unknown'}"], now)
    if until is not None:
        raise TooManyAttempts(
            "too many refused enrolment tokens from this address", retry_after_s=int((until - now).total_seconds()) + 1
        )
    provisioner = provisioner_of(svc.provisioner)
    secret = parse_token(body.token.strip())
    if secret is None:
        raise _refuse_exchange(conn, svc, info, None)
    agent: ProvisionedAgent | None = None
    with conn.transaction():
        row = tokens.redeem(conn, secret_hash(secret), now=now, client_addr=info.client_addr)
        if row is not None:
            # The agent (and its broker account) is committed by the provisioner; should this
            # transaction then fail, the token stays usable and the pending agent is left unused.
            agent = provisioner.create_agent(org_id=row.org_id, patient_id=row.patient_id)
            tokens.record_agent(conn, row.token_id, agent.agent_id)
            audit_store.append(
                conn,
                audit.entry(
                    None, info, svc.clock, action="enrolment.exchange", object_type="agent", outcome="success",
                    object_id=agent.agent_id, patient_id=row.patient_id, org_id=row.org_id,
                ),
            )  # fmt: skip
    if agent is None:
        raise _refuse_exchange(conn, svc, info, secret)
    return JSONResponse({"agent_id": agent.agent_id, "bundle": json.loads(agent.bundle_json)})

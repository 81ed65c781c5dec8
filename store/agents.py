"""The agents aggregate: agents, their assignments to patients, registration, last contact.

Lifecycle of an agent row: ``pending`` (created with broker credentials and the hash of a one-time
enrollment token) -> ``active`` (its registration arrived: public keys stored, token cleared) ->
``revoked`` (broker access removed, keys refused by ingest). Assignments to patients form a
history: re-assignment closes the open row (``valid_to``) and opens a new one, never updates it.
Every function runs inside the caller's transaction; the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

import psycopg
from psycopg import errors as pgerrors

from rpm_core.keys import AgentPublicKeys
from store.errors import Conflict, NotFound

__all__ = [
    "AgentListing",
    "AgentRecord",
    "AgentStatusName",
    "Assignment",
    "BrokerAccountRow",
    "activate_agent",
    "assign_agent",
    "broker_accounts",
    "create_agent",
    "list_agents",
    "load_agents",
    "revoke_agent",
    "touch_agents",
]

AgentStatusName = Literal["pending", "active", "revoked"]


@dataclass(frozen=True, slots=True)
class Assignment:
    patient_id: str
    valid_from: datetime
    valid_to: datetime | None


@dataclass(frozen=True, slots=True)
class AgentRecord:
    agent_id: str
    org_id: str
    status: AgentStatusName
    keys: AgentPublicKeys | None
    token_sha256: bytes | None
    enrollment_expires_at: datetime | None
    assignments: tuple[Assignment, ...]  # oldest first

    def patient_at(self, when: datetime) -> str | None:
        """The patient assigned at ``when``; before the first assignment, the current one."""
        for a in reversed(self.assignments):
            if a.valid_from <= when and (a.valid_to is None or when < a.valid_to):
                return a.patient_id
        current = [a for a in self.assignments if a.valid_to is None]
        return current[-1].patient_id if current else None


@dataclass(frozen=True, slots=True)
class BrokerAccountRow:
    org_id: str
    agent_id: str
    password_hash: str


def _require_patient(conn: psycopg.Connection[Any], org_id: str, patient_id: str) -> None:
    row = conn.execute("SELECT 1 FROM patients WHERE org_id = %s AND patient_id = %s", (org_id, patient_id)).fetchone()
    if row is None:
        raise NotFound("patient", f"{org_id}/{patient_id}")


def create_agent(
    conn: psycopg.Connection[Any],
    *,
    org_id: str,
    agent_id: str,
    patient_id: str,
    password_hash: str,
    token_sha256: bytes,
    expires_at: datetime,
    now: datetime,
) -> None:
    """A ``pending`` agent assigned to ``patient_id`` from ``now``."""
    if conn.execute("SELECT 1 FROM organizations WHERE org_id = %s", (org_id,)).fetchone() is None:
        raise NotFound("organisation", org_id)
    _require_patient(conn, org_id, patient_id)
    try:
        conn.execute(
            "INSERT INTO agents (agent_id, org_id, status, mqtt_password_hash, enrollment_token_sha256, "
            "enrollment_expires_at, created_at) VALUES (%s, %s, 'pending', %s, %s, %s, %s)",
            (agent_id, org_id, password_hash, token_sha256, expires_at, now),
        )
    except pgerrors.UniqueViolation as exc:
        raise Conflict("agent", agent_id, "exists already") from exc
    conn.execute(
        "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) VALUES (%s, %s, %s, %s)",
        (agent_id, org_id, patient_id, now),
    )


def _org_of(conn: psycopg.Connection[Any], agent_id: str, org_id: str | None = None) -> tuple[str, str]:
    """(organisation, status) of the agent, locked; NotFound also when it belongs to another ``org_id``."""
    row = conn.execute("SELECT org_id, status FROM agents WHERE agent_id = %s FOR UPDATE", (agent_id,)).fetchone()
    if row is None or (org_id is not None and row[0] != org_id):
        raise NotFound("agent", agent_id)
    return str(row[0]), str(row[1])


def assign_agent(
    conn: psycopg.Connection[Any], agent_id: str, patient_id: str, *, now: datetime, org_id: str | None = None
) -> None:
    """Close the open assignment at ``now`` and open one to ``patient_id`` (same organisation; with
    ``org_id``, an agent of another organisation is NotFound)."""
    org_id, status = _org_of(conn, agent_id, org_id)
    if status == "revoked":
        raise Conflict("agent", agent_id, "is revoked")
    _require_patient(conn, org_id, patient_id)
    conn.execute("UPDATE agent_assignments SET valid_to = %s WHERE agent_id = %s AND valid_to IS NULL", (now, agent_id))
    try:
        conn.execute(
            "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) VALUES (%s, %s, %s, %s)",
            (agent_id, org_id, patient_id, now),
        )
    except (pgerrors.UniqueViolation, pgerrors.CheckViolation) as exc:
        raise Conflict("agent", agent_id, "was assigned at this very instant already") from exc


def revoke_agent(conn: psycopg.Connection[Any], agent_id: str, *, now: datetime, org_id: str | None = None) -> None:
    """Revoke the agent (a no-op when revoked already); with ``org_id``, an agent of another
    organisation is NotFound."""
    _, status = _org_of(conn, agent_id, org_id)
    if status == "revoked":
        return
    conn.execute(
        "UPDATE agents SET status = 'revoked', revoked_at = %s, mqtt_password_hash = NULL, "
        "enrollment_token_sha256 = NULL WHERE agent_id = %s",
        (now, agent_id),
    )


def activate_agent(
    conn: psycopg.Connection[Any], agent_id: str, keys: AgentPublicKeys, *, agent_version: str, now: datetime
) -> bool:
    """Store the registered keys and activate a pending agent; the token is spent. False if not pending."""
    try:
        cur = conn.execute(
            "UPDATE agents SET status = 'active', sign_public_key = %s, sign_kid = %s, kex_public_key = %s, "
            "kex_kid = %s, agent_version = %s, activated_at = %s, last_seen_at = %s, "
            "enrollment_token_sha256 = NULL, enrollment_expires_at = NULL "
            "WHERE agent_id = %s AND status = 'pending'",
            (keys.sign, keys.sign_kid, keys.kex, keys.kex_kid, agent_version, now, now, agent_id),
        )
    except pgerrors.UniqueViolation as exc:  # another agent registered the same signing key
        raise Conflict("agent", agent_id, "signing key already registered") from exc
    return cur.rowcount == 1


def load_agents(conn: psycopg.Connection[Any], agent_ids: Iterable[str]) -> dict[str, AgentRecord]:
    ids = sorted(set(agent_ids))
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT agent_id, org_id, status, sign_public_key, kex_public_key, enrollment_token_sha256, "
        "enrollment_expires_at FROM agents WHERE agent_id = ANY(%s)",
        (ids,),
    ).fetchall()
    assignments: dict[str, list[Assignment]] = {}
    for agent, patient, start, end in conn.execute(
        "SELECT agent_id, patient_id, valid_from, valid_to FROM agent_assignments WHERE agent_id = ANY(%s) "
        "ORDER BY agent_id, valid_from",
        (ids,),
    ):
        assignments.setdefault(agent, []).append(Assignment(patient, start, end))
    out = {}
    for agent, org, status, sign, kex, token, expires in rows:
        keys = AgentPublicKeys(sign=bytes(sign), kex=bytes(kex)) if sign is not None and kex is not None else None
        out[agent] = AgentRecord(
            agent, org, status, keys, bytes(token) if token else None, expires, tuple(assignments.get(agent, ()))
        )
    return out


class AgentListing(NamedTuple):
    agent_id: str
    org_id: str
    status: AgentStatusName
    patient_id: str | None  # the current assignment (revoked agents keep their last one)
    last_seen_at: datetime | None


def list_agents(conn: psycopg.Connection[Any], *, org_id: str | None = None) -> list[AgentListing]:
    """Every agent (of ``org_id``, or of every organisation) with its current patient, by organisation and id."""
    return [
        AgentListing(r[0], r[1], r[2], r[3], r[4])
        for r in conn.execute(
            "SELECT a.agent_id, a.org_id, a.status, s.patient_id, a.last_seen_at FROM agents a "
            "LEFT JOIN agent_assignments s ON s.agent_id = a.agent_id AND s.valid_to IS NULL "
            "WHERE %(org)s::text IS NULL OR a.org_id = %(org)s ORDER BY a.org_id, a.agent_id",
            {"org": org_id},
        )
    ]


def broker_accounts(conn: psycopg.Connection[Any]) -> Sequence[BrokerAccountRow]:
    """Agents that may log in to the broker: every non-revoked agent with a password."""
    return [
        BrokerAccountRow(r[0], r[1], r[2])
        for r in conn.execute(
            "SELECT org_id, agent_id, mqtt_password_hash FROM agents "
            "WHERE status <> 'revoked' AND mqtt_password_hash IS NOT NULL ORDER BY agent_id"
        )
    ]


def touch_agents(conn: psycopg.Connection[Any], seen: Mapping[str, datetime]) -> None:
    """``last_seen_at`` moves forward only (workers may commit out of order)."""
    if not seen:
        return
    agents = sorted(seen)
    conn.execute(
        "UPDATE agents a SET last_seen_at = greatest(a.last_seen_at, u.seen) "
        "FROM unnest(%s::text[], %s::timestamptz[]) AS u(agent_id, seen) WHERE a.agent_id = u.agent_id",
        (agents, [seen[a] for a in agents]),
    )

"""The one guard every route that takes an id goes through: may this caller see that object?

``guard(kind, param)`` is a FastAPI dependency that reads the id from the path parameter
``param``, resolves the object with the resolver registered for ``kind`` and returns a
:class:`Resolved`. When the object does not exist, or exists outside the caller's organisation or
panel, it writes one ``denied`` audit row and raises :class:`NotFound`, whose body is the same as a
real 404's (ids cannot be probed).

Visibility of a patient: a patient user sees only themselves; everyone else sees the patients of
the care teams they belong to, and a patient for whom they hold an unexpired break-glass grant.
Objects that belong to a patient (alerts; devices, notes, time entries later) are visible when
their patient is. Organisation objects (users, care teams, break-glass grants) are visible to the
organisation's admins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

from fastapi import Depends, Request

from clinician_api import audit
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import NotFound
from clinician_api.security import Principal, require
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import patient_id as check_patient_id
from store import alerts as alert_store
from store import care_teams, users
from store.connection import Connection

__all__ = ["Denied", "Resolved", "guard", "patient_basis", "register", "resolve"]


@dataclass(frozen=True, slots=True)
class Resolved:
    kind: str
    object_id: str
    org_id: str
    patient_id: str | None  # the patient the object belongs to (None for organisation objects)
    basis: str  # 'self' | 'panel' | 'break_glass' | 'org'
    row: Any = None
    who: Principal | None = None  # the caller, as authenticated for this request

    @property
    def caller(self) -> Principal:
        if self.who is None:  # pragma: no cover - guard() always sets it
            raise RuntimeError("resolved outside guard()")
        return self.who


@dataclass(frozen=True, slots=True)
class Denied:
    patient_id: str | None = None  # the real patient behind a refused id (for the accounting), if any


Resolver = Callable[[Connection, Principal, str, datetime], Resolved | Denied]
_RESOLVERS: dict[str, Resolver] = {}


def register(kind: str) -> Callable[[Resolver], Resolver]:
    def deco(fn: Resolver) -> Resolver:
        _RESOLVERS[kind] = fn
        return fn

    return deco


def resolve(kind: str, conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    """Resolve ``raw`` with the resolver of ``kind`` (for resolvers that delegate to another)."""
    return _RESOLVERS[kind](conn, who, raw, now)


def patient_basis(conn: Connection, who: Principal, patient_id: str, now: datetime) -> str | None:
    """Why ``who`` may see ``patient_id`` ('self', 'panel', 'break_glass'), or None."""
    if who.is_patient:
        return "self" if who.patient_id == patient_id else None
    return care_teams.patient_access(conn, user_id=who.user_id, org_id=who.org_id, patient_id=patient_id, now=now)


@register("patient")
def _patient(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    try:
        pid = check_patient_id(raw)
    except InvalidIdentifier:
        return Denied()
    org = care_teams.patient_org(conn, pid)
    if org is None:
        return Denied()
    basis = patient_basis(conn, who, pid, now) if org == who.org_id else None
    if basis is None:
        return Denied(pid)
    return Resolved("patient", pid, org, pid, basis)


@register("alert")
def _alert(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return Denied()
    row = alert_store.get_alert(conn, int(raw))
    if row is None:
        return Denied()
    basis = patient_basis(conn, who, row.patient_id, now) if row.org_id == who.org_id else None
    if basis is None:
        return Denied(row.patient_id)
    return Resolved("alert", raw, row.org_id, row.patient_id, basis, row)


@register("user")
def _user(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    row = users.get_user(conn, raw, org_id=who.org_id)
    return Denied() if row is None else Resolved("user", raw, row.org_id, None, "org", row)


@register("care_team")
def _team(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    row = care_teams.get_team(conn, raw, who.org_id)
    return Denied() if row is None else Resolved("care_team", raw, row.org_id, None, "org", row)


_ACTIONS: Final = {"GET": "read", "HEAD": "read", "POST": "write", "PUT": "write", "PATCH": "write", "DELETE": "write"}


def guard(
    kind: str, param: str, permission: Permission, *, source: Literal["path", "query"] = "path"
) -> Callable[..., Resolved]:
    """The dependency for a route whose path parameter ``param`` (or query parameter, ``source``)
    names a ``kind`` object: the caller (who must hold ``permission``) and the object, or a 404 and
    one denied audit row."""
    resolver = _RESOLVERS[kind]
    caller = Depends(require(permission))

    # A default, not an Annotated alias: string annotations resolve in module scope only.
    def dependency(request: Request, conn: Db, svc: Svc, info: Info, who: Principal = caller) -> Resolved:
        params = request.path_params if source == "path" else request.query_params
        raw = str(params.get(param, ""))
        found = resolver(conn, who, raw, svc.clock.now())
        if isinstance(found, Resolved):
            return replace(found, who=who)
        action = f"{kind}.{_ACTIONS.get(request.method, 'read')}"
        audit.deny(
            conn,
            who,
            info,
            svc.clock,
            action=action,
            object_type=kind,
            object_id=raw[:200],
            patient_id=found.patient_id,
        )
        raise NotFound()

    return dependency


@register("patient_in_org")
def _patient_in_org(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    """A patient of the caller's organisation, panel or not (what break-glass opens)."""
    try:
        pid = check_patient_id(raw)
    except InvalidIdentifier:
        return Denied()
    org = care_teams.patient_org(conn, pid)
    if org is None:
        return Denied()
    if org != who.org_id or who.is_patient:
        return Denied(pid)
    return Resolved("patient", pid, org, pid, "org")

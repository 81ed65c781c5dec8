"""``/api/v1/admin/users``: accounts of the admin's organisation, their sessions, second factor and
integration tokens. Field rules: the organisation of an account is the admin's and never changes;
nobody changes their own role or status; a patient account stays bound to its patient."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from clinician_api import audit
from clinician_api.access import Resolved, guard
from clinician_api.audit import recorded
from clinician_api.auth import signin
from clinician_api.auth.passwords import check_policy
from clinician_api.auth.roles import TOKEN_SCOPES, Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Conflict, Forbidden, Invalid, NotFound
from clinician_api.keys import new_secret, secret_hash
from clinician_api.pagination import Page
from clinician_api.security import Principal, require
from store import sessions as session_store
from store import users
from store.care_teams import patient_org
from store.users import UserRow, UserUpdate

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
User = Annotated[Resolved, Depends(guard("user", "user_id", Permission.ADMIN))]
RoleName = Literal["admin", "clinician", "nurse", "care_coordinator", "patient", "service"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    user_id: str
    email: str
    display_name: str
    role: RoleName
    patient_id: str | None
    status: Literal["active", "disabled"]
    totp_enrolled: bool
    created_at: datetime


class UserCreate(Strict):
    email: str = Field(pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$", max_length=254)
    display_name: str = Field(min_length=1, max_length=200)
    role: RoleName
    patient_id: str | None = Field(default=None, max_length=128, description="Required for role patient.")
    password: str | None = Field(default=None, max_length=1024, description="Or send a reset link afterwards.")


class UserPatch(Strict):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Literal["admin", "clinician", "nurse", "care_coordinator"] | None = None
    status: Literal["active", "disabled"] | None = None


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, description="Some of: " + ", ".join(sorted(TOKEN_SCOPES)))
    days: int = Field(default=90, ge=1, le=3650)


class TokenOut(BaseModel):
    token_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once: only its hash is stored.")


class Count(BaseModel):
    count: int


def _out(u: UserRow) -> UserOut:
    return UserOut(
        user_id=u.user_id,
        email=u.email,
        display_name=u.display_name,
        role=u.role,
        patient_id=u.patient_id,
        status=u.status,
        totp_enrolled=u.totp_enabled_at is not None,
        created_at=u.created_at,
    )


@router.get("/users", response_model=Page[UserOut])
def list_users(
    who: Admin,
    conn: Db,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[UserOut]:
    limit = min(limit, svc.settings.api_page_max)
    after = None
    if cursor is not None:
        email, uid = svc.cursors.decode("users", who.user_id, cursor)
        after = (str(email), str(uid))
    rows = users.list_users(conn, who.org_id, after=after, limit=limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    nxt = svc.cursors.encode("users", who.user_id, [page[-1].email, page[-1].user_id]) if more else None
    return Page[UserOut](items=[_out(u) for u in page], next_cursor=nxt)


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserCreate, who: Admin, conn: Db, svc: Svc, info: Info) -> UserOut:
    if (body.role == "patient") != (body.patient_id is not None):
        raise Invalid("a patient account needs patient_id, and only a patient account has one", field="patient_id")
    if body.role == "service" and body.password is not None:
        raise Invalid("a service account signs in with tokens only", field="password")
    hashed = None
    if body.password is not None:
        check_policy(body.password, email=str(body.email))
        hashed = svc.passwords.hash(body.password)
    with recorded(
        conn, who, info, svc.clock, action="user.create", object_type="user", patient_id=body.patient_id
    ) as rec:
        if body.patient_id is not None and patient_org(conn, body.patient_id) != who.org_id:
            raise Invalid("no such patient in the organisation", field="patient_id", code="unknown_patient")
        user = users.create_user(
            conn,
            org_id=who.org_id,
            email=str(body.email),
            display_name=body.display_name,
            role=body.role,
            now=svc.clock.now(),
            patient_id=body.patient_id,
            password_hash=hashed,
        )
        rec.object_id = user.user_id
    return _out(user)


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(target: User) -> UserOut:
    return _out(target.row)


@router.patch("/users/{user_id}", response_model=UserOut)
def patch_user(body: UserPatch, target: User, conn: Db, svc: Svc, info: Info) -> UserOut:
    who, user = target.caller, target.row
    if user.user_id == who.user_id and (body.role is not None or body.status is not None):
        raise Forbidden("nobody changes their own role or status", code="self_change")
    if body.role is not None and user.role in ("patient", "service"):
        raise Invalid(f"a {user.role} account keeps its role", field="role")
    with recorded(conn, who, info, svc.clock, action="user.update", object_type="user", object_id=user.user_id):
        now = svc.clock.now()
        updated = users.update_user(conn, user.user_id, UserUpdate(body.display_name, body.role, body.status), now)
        if updated is None:  # pragma: no cover - resolved a moment ago
            raise NotFound()
        if body.status == "disabled" or (body.role is not None and body.role != user.role):
            session_store.revoke_user_sessions(conn, user.user_id, now=now, reason="admin")
    return _out(updated)


@router.post("/users/{user_id}/sessions/revoke", response_model=Count, summary="Sign the user out everywhere")
def revoke_sessions(target: User, conn: Db, svc: Svc, info: Info) -> Count:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="user.revoke_sessions",
        object_type="user",
        object_id=target.object_id,
    ):
        n = session_store.revoke_user_sessions(conn, target.object_id, now=svc.clock.now(), reason="admin")
    return Count(count=n)


@router.post("/users/{user_id}/totp/reset", response_model=UserOut, summary="Remove the authenticator (re-enrol)")
def reset_totp(target: User, conn: Db, svc: Svc, info: Info) -> UserOut:
    with recorded(
        conn, target.caller, info, svc.clock, action="user.totp_reset", object_type="user", object_id=target.object_id
    ):
        now = svc.clock.now()
        users.reset_totp(conn, target.object_id, now)
        session_store.revoke_user_sessions(conn, target.object_id, now=now, reason="totp_reset")
        user = users.get_user(conn, target.object_id)
    if user is None:  # pragma: no cover
        raise NotFound()
    return _out(user)


@router.post(
    "/users/{user_id}/password-reset",
    response_model=Count,
    status_code=202,
    summary="Email the user a one-time link to set a password",
)
def send_reset(target: User, conn: Db, svc: Svc, info: Info) -> Count:
    user: UserRow = target.row
    if user.role == "service":
        raise Invalid("a service account has no password", field="user_id")
    signin.request_reset(conn, svc, info, user.email)
    return Count(count=1)


@router.post("/users/{user_id}/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, target: User, conn: Db, svc: Svc, info: Info) -> TokenCreated:
    user: UserRow = target.row
    if user.role != "service":
        raise Conflict("bearer tokens are for service accounts", code="not_service")
    unknown = set(body.scopes) - {s.value for s in TOKEN_SCOPES}
    if unknown:
        raise Invalid(f"unknown scopes: {', '.join(sorted(unknown))}", field="scopes")
    days = min(body.days, svc.settings.api_token_max_days)
    secret = "vgl_" + new_secret()
    now = svc.clock.now()
    with recorded(conn, target.caller, info, svc.clock, action="token.create", object_type="api_token") as rec:
        row = session_store.create_token(
            conn,
            secret_sha256=secret_hash(secret),
            user_id=user.user_id,
            org_id=user.org_id,
            name=body.name,
            scopes=body.scopes,
            created_by=target.caller.user_id,
            now=now,
            expires_at=now + timedelta(days=days),
        )
        rec.object_id = row.token_id
    return TokenCreated(token=secret, **_token(row).model_dump())


def _token(t: session_store.TokenRow) -> TokenOut:
    return TokenOut(
        token_id=t.token_id,
        name=t.name,
        scopes=list(t.scopes),
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked_at=t.revoked_at,
        last_used_at=t.last_used_at,
    )


@router.get("/users/{user_id}/tokens", response_model=list[TokenOut])
def list_tokens(target: User, conn: Db) -> list[TokenOut]:
    return [_token(t) for t in session_store.list_tokens(conn, target.object_id)]


@router.delete("/tokens/{token_id}", response_model=Count)
def revoke_token(token_id: str, who: Admin, conn: Db, svc: Svc, info: Info) -> Count:
    with conn.transaction():
        ok = session_store.revoke_token(conn, token_id, org_id=who.org_id, now=svc.clock.now())
        if ok:
            audit.security_event(
                conn, who, info, svc.clock, action="token.revoke", outcome="success", object_id=token_id
            )
    if not ok:
        audit.deny(
            conn, who, info, svc.clock, action="api_token.write", object_type="api_token", object_id=token_id[:200]
        )
        raise NotFound()
    return Count(count=1)

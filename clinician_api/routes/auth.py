"""``/api/v1/auth``: sign-in, the second factor, sessions, password change and reset, ``me``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from clinician_api import audit
from clinician_api.auth import signin, totp
from clinician_api.auth.roles import MFA_ROLES
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import NotFound
from clinician_api.security import CSRF_COOKIE, Principal, require, session_cookie_name
from store import sessions as session_store
from store import users

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"])

Signed = Annotated[Principal, Depends(require(None))]
Partial = Annotated[Principal, Depends(require(None, partial_ok=True))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    user_id: str
    org_id: str
    email: str
    display_name: str
    role: str
    patient_id: str | None
    totp_enrolled: bool
    second_factor: Literal["passed", "required", "enrol", "not_required"]


class LoginOut(BaseModel):
    user: Me
    csrf_token: str = Field(description="Send as X-CSRF-Token on every POST/PUT/PATCH/DELETE of this session.")
    expires_at: datetime


class TotpEnrolOut(BaseModel):
    secret: str = Field(description="Base32 secret for manual entry in an authenticator app.")
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as an SVG QR code.")


class TotpIn(Strict):
    code: str = Field(pattern=r"^\s*\d{3}\s?\d{3}\s*$")


class SessionOut(BaseModel):
    session_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client_addr: str | None
    user_agent: str | None
    current: bool


class PasswordChangeIn(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class ResetRequestIn(Strict):
    email: str = Field(min_length=3, max_length=254)


class ResetCompleteIn(Strict):
    token: str = Field(min_length=10, max_length=100)
    new_password: str = Field(min_length=1, max_length=1024)


class Done(BaseModel):
    ok: bool = True
    detail: str | None = None


def _me(user: users.UserRow, *, second_factor_ok: bool) -> Me:
    needs = user.role in MFA_ROLES or user.totp_enabled_at is not None
    state: Literal["passed", "required", "enrol", "not_required"]
    if not needs:
        state = "not_required"
    elif second_factor_ok:
        state = "passed"
    else:
        state = "required" if user.totp_enabled_at is not None else "enrol"
    return Me(
        user_id=user.user_id,
        org_id=user.org_id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        patient_id=user.patient_id,
        totp_enrolled=user.totp_enabled_at is not None,
        second_factor=state,
    )


@router.post("/login", response_model=LoginOut, summary="Sign in with email and password")
def login(body: LoginIn, response: Response, conn: Db, svc: Svc, info: Info) -> LoginOut:
    new = signin.sign_in(conn, svc, info, body.email, body.password)
    secure = svc.settings.api_cookie_secure
    max_age = svc.settings.api_session_absolute_s
    response.set_cookie(
        session_cookie_name(secure),
        new.secret,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    csrf = svc.keys.csrf_token(new.secret)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=secure, httponly=False, samesite="strict")
    needs = new.user.role in MFA_ROLES or new.user.totp_enabled_at is not None
    return LoginOut(user=_me(new.user, second_factor_ok=not needs), csrf_token=csrf, expires_at=new.expires_at)


@router.post("/logout", response_model=Done)
def logout(who: Partial, response: Response, conn: Db, svc: Svc, info: Info) -> Done:
    if who.session_id is not None:
        with conn.transaction():
            session_store.revoke_session(
                conn, who.session_id, user_id=who.user_id, now=svc.clock.now(), reason="logout"
            )
            audit.security_event(
                conn, who, info, svc.clock, action="auth.logout", outcome="success", object_id=who.user_id
            )
    secure = svc.settings.api_cookie_secure
    response.delete_cookie(session_cookie_name(secure), path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")
    return Done()


@router.get("/me", response_model=Me)
def me(who: Partial, conn: Db) -> Me:
    user = users.get_user(conn, who.user_id)
    if user is None:  # pragma: no cover - authenticated a moment ago
        raise NotFound()
    return _me(user, second_factor_ok=who.second_factor_ok)


@router.post("/totp/enrol", response_model=TotpEnrolOut, summary="Start enrolling an authenticator app")
def totp_enrol(who: Partial, conn: Db, svc: Svc, info: Info) -> TotpEnrolOut:
    secret, uri = signin.start_enrolment(conn, svc, info, who)
    return TotpEnrolOut(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))


@router.get(
    "/totp/qr.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
    summary="The pending enrolment's QR code as an image",
)
def totp_qr(who: Partial, conn: Db, svc: Svc) -> Response:
    uri = signin.pending_uri(conn, svc, who)
    if uri is None:
        raise NotFound()
    return Response(totp.qr_svg(uri), media_type="image/svg+xml")


@router.post("/totp/verify", response_model=Me, summary="Verify a TOTP code (confirms a pending enrolment)")
def totp_verify(body: TotpIn, who: Partial, conn: Db, svc: Svc, info: Info) -> Me:
    signin.verify_second_factor(conn, svc, info, who, body.code)
    user = users.get_user(conn, who.user_id)
    if user is None:  # pragma: no cover
        raise NotFound()
    return _me(user, second_factor_ok=True)


@router.get("/sessions", response_model=list[SessionOut])
def list_sessions(who: Signed, conn: Db, svc: Svc) -> list[SessionOut]:
    rows = session_store.list_sessions(conn, who.user_id, now=svc.clock.now())
    return [
        SessionOut(
            session_id=s.session_id,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            client_addr=s.client_addr,
            user_agent=s.user_agent,
            current=s.session_id == who.session_id,
        )
        for s in rows
    ]


@router.delete("/sessions/{session_id}", response_model=Done)
def revoke_session(session_id: str, who: Signed, conn: Db, svc: Svc, info: Info) -> Done:
    with conn.transaction():
        ok = session_store.revoke_session(conn, session_id, user_id=who.user_id, now=svc.clock.now(), reason="user")
        if ok:
            audit.security_event(
                conn, who, info, svc.clock, action="auth.session_revoke", outcome="success", object_id=session_id[:64]
            )
    if not ok:
        audit.deny(
            conn, who, info, svc.clock, action="session.write", object_type="session", object_id=session_id[:200]
        )
        raise NotFound()
    return Done()


@router.post("/password", response_model=Done, summary="Change one's password (revokes one's other sessions)")
def change_password(body: PasswordChangeIn, who: Signed, conn: Db, svc: Svc, info: Info) -> Done:
    revoked = signin.change_password(conn, svc, info, who, body.current_password, body.new_password)
    return Done(detail=f"{revoked} other session(s) signed out")


@router.post("/password-reset", response_model=Done, status_code=status.HTTP_202_ACCEPTED)
def password_reset_request(body: ResetRequestIn, conn: Db, svc: Svc, info: Info) -> Done:
    """Emails a one-time link when the account exists; the answer is the same either way."""
    signin.request_reset(conn, svc, info, body.email)
    return Done(detail="if the address belongs to an account, a link is on its way")


@router.post("/password-reset/complete", response_model=Done)
def password_reset_complete(body: ResetCompleteIn, conn: Db, svc: Svc, info: Info) -> Done:
    signin.complete_reset(conn, svc, info, body.token, body.new_password)
    return Done(detail="password set: sign in again")

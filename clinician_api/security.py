"""Who is calling: a session cookie (browser) or a bearer token (integration), checked on every
request; CSRF for cookie-authenticated unsafe methods; the role's permission for the route.

Session rules (HIPAA 164.312(a)(2)(iii), (d)):

- a session ends ``api_session_idle_s`` after its last use (automatic logoff) and
  ``api_session_absolute_s`` after sign-in, and when revoked (logout, admin, password change);
- a staff session (and a patient's who enrolled TOTP) is *partial* until the second factor is
  verified: it may only enrol or verify TOTP, read ``/auth/me`` and log out;
- unsafe methods (POST, PUT, PATCH, DELETE) with a cookie need ``X-CSRF-Token``: the HMAC of the
  session secret handed out at sign-in (and in the ``vigil_csrf`` cookie, readable by the page);
- bearer tokens skip CSRF (browsers never attach them by themselves) and are limited to their scopes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from fastapi import Request

from clinician_api import audit
from clinician_api.auth.roles import MFA_ROLES, Permission, Role, allowed
from clinician_api.context import Db, Info, RequestInfo, Services, Svc
from clinician_api.errors import Forbidden, SecondFactorRequired, Unauthenticated
from clinician_api.keys import secret_hash
from store import sessions as session_store
from store.connection import Connection

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "Principal",
    "authenticate",
    "require",
    "session_cookie_name",
]

CSRF_HEADER: Final = "x-csrf-token"
CSRF_COOKIE: Final = "vigil_csrf"
_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def session_cookie_name(secure: bool) -> str:
    """``__Host-`` makes browsers refuse the cookie unless Secure, host-only and for path /."""
    return "__Host-vigil_session" if secure else "vigil_session"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    org_id: str
    role: str
    patient_id: str | None
    via: str  # 'session' | 'token'
    session_id: str | None = None
    session_secret: str | None = None
    token_id: str | None = None
    scopes: frozenset[str] | None = None
    second_factor_ok: bool = True
    totp_enabled: bool = False

    @property
    def is_patient(self) -> bool:
        return self.role == Role.PATIENT


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("malformed Authorization header", code="bad_credentials")
    return value.strip()


def _from_token(conn: Connection, svc: Services, token: str) -> Principal:
    found = session_store.token_principal(conn, secret_hash(token))
    now = svc.clock.now()
    if found is None or found.status != "active":
        raise Unauthenticated("the token is not valid", code="bad_credentials")
    if found.token.revoked_at is not None:
        raise Unauthenticated("the token was revoked", code="token_revoked")
    if found.token.expires_at <= now:
        raise Unauthenticated("the token has expired", code="token_expired")
    session_store.touch_token(conn, found.token.token_id, now)
    return Principal(
        user_id=found.user_id,
        org_id=found.org_id,
        role=found.role,
        patient_id=found.patient_id,
        via="token",
        token_id=found.token.token_id,
        scopes=frozenset(found.token.scopes),
    )


def _session_state(svc: Services, s: session_store.SessionRow, now: datetime) -> str | None:
    """Why the session cannot be used at ``now``, or None when it can."""
    idle = timedelta(seconds=svc.settings.api_session_idle_s)
    if s.revoked_at is not None:
        return "session_revoked"
    if s.expires_at <= now:
        return "session_expired"
    if now - s.last_seen_at >= idle:
        return "session_idle"
    return None


def _from_cookie(request: Request, conn: Connection, svc: Services, *, touch: bool) -> Principal:
    secret = request.cookies.get(session_cookie_name(svc.settings.api_cookie_secure))
    if not secret or len(secret) > 100:
        raise Unauthenticated("sign in first", code="no_credentials")
    found = session_store.session_principal(conn, secret_hash(secret))
    if found is None or found.status != "active":
        raise Unauthenticated("sign in first", code="no_credentials")
    now = svc.clock.now()
    why = _session_state(svc, found.session, now)
    if why is not None:
        raise Unauthenticated("the session has ended: sign in again", code=why)
    if touch and (now - found.session.last_seen_at).total_seconds() >= svc.settings.api_session_touch_s:
        session_store.touch_session(conn, found.session.session_id, now)
    needs_mfa = found.role in MFA_ROLES or found.totp_enabled
    return Principal(
        user_id=found.user_id,
        org_id=found.org_id,
        role=found.role,
        patient_id=found.patient_id,
        via="session",
        session_id=found.session.session_id,
        session_secret=secret,
        second_factor_ok=not needs_mfa or found.session.mfa_at is not None,
        totp_enabled=found.totp_enabled,
    )


def authenticate(request: Request, conn: Connection, svc: Services, *, touch: bool = True) -> Principal:
    token = _bearer(request)
    if token is not None:
        return _from_token(conn, svc, token)
    who = _from_cookie(request, conn, svc, touch=touch)
    if request.method not in _SAFE and not svc.keys.csrf_ok(who.session_secret or "", request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or wrong X-CSRF-Token header", code="csrf")
    return who


@functools.cache
def require(
    permission: Permission | None, *, partial_ok: bool = False, touch: bool = True
) -> Callable[[Request, Db, Svc, Info], Principal]:
    """A dependency: the authenticated caller, who holds ``permission`` (None: any signed-in user)
    and has passed the second factor (unless ``partial_ok``). Memoised, so that FastAPI resolves
    the caller once per request however many dependencies ask for the same requirement."""

    def dependency(request: Request, conn: Db, svc: Svc, info: Info) -> Principal:
        who = authenticate(request, conn, svc, touch=touch)
        if not partial_ok and not who.second_factor_ok:
            raise SecondFactorRequired(enrolled=who.totp_enabled)
        if permission is not None and not allowed(who.role, permission, who.scopes):
            _refuse(conn, who, info, svc, permission)
        return who

    return dependency


def _refuse(conn: Connection, who: Principal, info: RequestInfo, svc: Services, permission: Permission) -> None:
    audit.deny(
        conn, who, info, svc.clock, action=permission.value, object_type="route", object_id=info.path, reason="role"
    )
    raise Forbidden(f"the {who.role} role may not do this", code="role")

"""Sign-in, the second factor, password changes and resets: the rules, over store and a clock.

Throttling (all in the database, so every API process shares it): a failed password or TOTP code
counts against three keys: the (account, address) pair, the account, and the address. Each key
locks for ``api_login_lockout_s`` when it reaches its own limit inside ``api_login_window_s``.
The pair's limit is low (5): it stops guessing from one place without letting that place lock the
real user out elsewhere. The account's limit is high (50): distributed guessing. The address's
limit (30) stops password spraying over many accounts. A locked key refuses attempts without
checking them (they neither count nor extend the lock), so every lockout ends on time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography.exceptions import InvalidTag

from clinician_api import audit
from clinician_api.auth import totp
from clinician_api.auth.passwords import check_policy
from clinician_api.context import RequestInfo, Services
from clinician_api.errors import Conflict, Invalid, TooManyAttempts, Unauthenticated
from clinician_api.keys import new_secret, secret_hash
from clinician_api.security import Principal
from store import login_throttle, password_resets, users
from store import sessions as session_store
from store.connection import Connection
from store.notification_outbox import NewNotification, enqueue
from store.users import UserRow

__all__ = [
    "NewSession",
    "change_password",
    "complete_reset",
    "request_reset",
    "sign_in",
    "start_enrolment",
    "verify_second_factor",
]

_WRONG: Final = "the email or password is wrong"


@dataclass(frozen=True, slots=True)
class NewSession:
    user: UserRow
    secret: str
    session_id: str
    expires_at: datetime


def _keys(user_id: str | None, addr: str | None) -> list[tuple[str, str]]:
    """(key, which limit) pairs a failure counts against."""
    where = addr or "unknown"
    keys = [(f"address:{where}", "address")]
    if user_id is not None:
        keys += [(f"account_address:{user_id}|{where}", "pair"), (f"account:{user_id}", "account")]
    return keys


def _locked_message(until: datetime, now: datetime) -> TooManyAttempts:
    minutes = max(1, round((until - now).total_seconds() / 60))
    return TooManyAttempts(
        f"too many failed attempts: sign-in is locked for {minutes} more minute{'s' if minutes != 1 else ''} "
        f"(until {until:%H:%M} UTC); a password reset works meanwhile",
        retry_after_s=int((until - now).total_seconds()) + 1,
    )


def _check_lock(conn: Connection, svc: Services, user_id: str | None, addr: str | None, now: datetime) -> None:
    until = login_throttle.locked_until(conn, [k for k, _ in _keys(user_id, addr)], now)
    if until is not None:
        raise _locked_message(until, now)


def _count_failure(
    conn: Connection, svc: Services, user_id: str | None, addr: str | None, now: datetime
) -> datetime | None:
    s = svc.settings
    limits = {
        "pair": s.api_login_max_failures,
        "account": s.api_login_account_max_failures,
        "address": s.api_login_address_max_failures,
    }
    locked: datetime | None = None
    for key, which in _keys(user_id, addr):
        until = login_throttle.record_failure(
            conn,
            key,
            now,
            window=timedelta(seconds=s.api_login_window_s),
            max_failures=limits[which],
            lockout=timedelta(seconds=s.api_login_lockout_s),
        )
        if until is not None and until > now:
            locked = until if locked is None else max(locked, until)
    return locked


def sign_in(conn: Connection, svc: Services, info: RequestInfo, email: str, password: str) -> NewSession:
    now = svc.clock.now()
    user = users.get_user_by_email(conn, email.strip())
    usable = user if user is not None and user.status == "active" and user.role != "service" else None
    uid = usable.user_id if usable else None
    try:
        _check_lock(conn, svc, uid, info.client_addr, now)
    except TooManyAttempts:
        with conn.transaction():
            audit.security_event(
                conn,
                None,
                info,
                svc.clock,
                action="auth.login",
                outcome="denied",
                object_id=uid,
                reason="locked",
                org_id=usable.org_id if usable else None,
            )
        raise
    ok = svc.passwords.verify(usable.password_hash if usable else None, password)
    if not ok or usable is None:
        with conn.transaction():
            locked = _count_failure(conn, svc, uid, info.client_addr, now)
            audit.security_event(
                conn,
                None,
                info,
                svc.clock,
                action="auth.login",
                outcome="failed",
                object_id=uid,
                reason="bad_password",
                org_id=usable.org_id if usable else None,
            )
        if locked is not None:
            raise _locked_message(locked, now)
        raise Unauthenticated(_WRONG, code="bad_credentials")
    return _open_session(conn, svc, info, usable, password, now)


def _open_session(
    conn: Connection, svc: Services, info: RequestInfo, user: UserRow, password: str, now: datetime
) -> NewSession:
    secret = new_secret()
    expires = now + timedelta(seconds=svc.settings.api_session_absolute_s)
    rehash = (
        svc.passwords.hash(password) if user.password_hash and svc.passwords.needs_rehash(user.password_hash) else None
    )
    with conn.transaction():
        login_throttle.clear(conn, f"account_address:{user.user_id}|{info.client_addr or 'unknown'}")
        if rehash is not None:
            users.set_password(conn, user.user_id, rehash, now)
        session_id = session_store.create_session(
            conn,
            secret_sha256=secret_hash(secret),
            user_id=user.user_id,
            org_id=user.org_id,
            now=now,
            expires_at=expires,
            client_addr=info.client_addr,
            user_agent=info.user_agent,
        )
        audit.security_event(
            conn,
            None,
            info,
            svc.clock,
            action="auth.login",
            outcome="success",
            object_id=user.user_id,
            org_id=user.org_id,
        )
    return NewSession(user, secret, session_id, expires)


def _user_of(conn: Connection, who: Principal) -> UserRow:
    user = users.get_user(conn, who.user_id)
    if user is None:  # pragma: no cover - the session's user was read in this request
        raise Unauthenticated("sign in first", code="no_credentials")
    return user


def start_enrolment(conn: Connection, svc: Services, info: RequestInfo, who: Principal) -> tuple[str, str]:
    """A new pending TOTP secret: (base32 secret, otpauth URI). Replacing an enrolled factor needs a
    session that has passed it (a stolen password alone cannot swap the authenticator)."""
    user = _user_of(conn, who)
    if user.totp_enabled_at is not None and not (who.second_factor_ok and who.via == "session"):
        raise Conflict("an authenticator is enrolled already: verify it first", code="totp_enrolled")
    secret = totp.new_secret()
    with conn.transaction():
        users.set_totp_pending(
            conn, user.user_id, svc.keys.seal(secret.encode(), bound_to=user.user_id), svc.clock.now()
        )
        audit.security_event(
            conn, who, info, svc.clock, action="auth.totp_enrol", outcome="success", object_id=user.user_id
        )
    return secret, totp.provisioning_uri(secret, user.email)


def pending_uri(conn: Connection, svc: Services, who: Principal) -> str | None:
    user = _user_of(conn, who)
    if user.totp_pending_sealed is None:
        return None
    try:
        secret = svc.keys.unseal(user.totp_pending_sealed, bound_to=user.user_id).decode()
    except InvalidTag:
        return None
    return totp.provisioning_uri(secret, user.email)


def verify_second_factor(conn: Connection, svc: Services, info: RequestInfo, who: Principal, code: str) -> None:
    """Check a TOTP code (the enrolled secret, else the pending one, which it then confirms) and mark
    the session as having passed the second factor."""
    now = svc.clock.now()
    user = _user_of(conn, who)
    sealed = user.totp_secret_sealed or user.totp_pending_sealed
    if sealed is None:
        raise Conflict("no authenticator is enrolled: enrol one first", code="totp_not_enrolled")
    with conn.transaction():
        _check_lock(conn, svc, user.user_id, info.client_addr, now)
    try:
        secret = svc.keys.unseal(sealed, bound_to=user.user_id).decode()
    except InvalidTag as exc:
        raise Conflict("the authenticator must be enrolled again", code="totp_unreadable") from exc
    step = totp.matching_step(secret, code, now)
    with conn.transaction():
        if step is None or not users.claim_totp_step(conn, user.user_id, step):
            locked = _count_failure(conn, svc, user.user_id, info.client_addr, now)
            audit.security_event(
                conn,
                who,
                info,
                svc.clock,
                action="auth.totp_verify",
                outcome="failed",
                object_id=user.user_id,
                reason="bad_code",
            )
            failed = True
        else:
            if user.totp_secret_sealed is None:
                users.enable_totp(conn, user.user_id, now)
            if who.session_id is not None:
                session_store.mark_mfa(conn, who.session_id, now)
            audit.security_event(
                conn, who, info, svc.clock, action="auth.totp_verify", outcome="success", object_id=user.user_id
            )
            failed = False
    if failed:
        if locked is not None:
            raise _locked_message(locked, now)
        raise Invalid("the code is wrong or was used already", field="code", code="bad_code")


def change_password(conn: Connection, svc: Services, info: RequestInfo, who: Principal, current: str, new: str) -> int:
    """Set a new password (the current one proves it is the user); revokes the user's other sessions."""
    user = _user_of(conn, who)
    if not svc.passwords.verify(user.password_hash, current):
        with conn.transaction():
            audit.security_event(
                conn,
                who,
                info,
                svc.clock,
                action="auth.password_change",
                outcome="failed",
                object_id=user.user_id,
                reason="bad_password",
            )
        raise Invalid("the current password is wrong", field="current_password", code="bad_password")
    check_policy(new, email=user.email)
    hashed = svc.passwords.hash(new)
    now = svc.clock.now()
    with conn.transaction():
        users.set_password(conn, user.user_id, hashed, now)
        revoked = session_store.revoke_user_sessions(
            conn, user.user_id, now=now, reason="password_changed", keep=who.session_id
        )
        audit.security_event(
            conn, who, info, svc.clock, action="auth.password_change", outcome="success", object_id=user.user_id
        )
    return revoked


def request_reset(conn: Connection, svc: Services, info: RequestInfo, email: str) -> None:
    """Queue a reset email when the account exists and may have one; says nothing either way."""
    now = svc.clock.now()
    user = users.get_user_by_email(conn, email.strip())
    if user is None or user.status != "active" or user.role == "service":
        return
    window = timedelta(seconds=svc.settings.api_login_window_s)
    secret = new_secret()
    expires = now + timedelta(seconds=svc.settings.api_reset_ttl_s)
    with conn.transaction():
        over = login_throttle.record_failure(
            conn,
            f"reset:{user.user_id}",
            now,
            window=window,
            max_failures=svc.settings.api_reset_max_per_account + 1,
            lockout=window,
        )
        if over is not None:
            audit.security_event(
                conn,
                None,
                info,
                svc.clock,
                action="auth.password_reset_request",
                outcome="denied",
                object_id=user.user_id,
                reason="throttled",
                org_id=user.org_id,
            )
            return
        reset_id = password_resets.create_reset(
            conn, secret_sha256=secret_hash(secret), user_id=user.user_id, now=now, expires_at=expires
        )
        link = f"{svc.settings.api_public_url.rstrip('/')}/reset-password#token={secret}"
        enqueue(
            conn,
            NewNotification(
                org_id=user.org_id,
                channel="email",
                recipient_user_id=user.user_id,
                kind="password_reset",
                idempotency_key=f"password_reset:{reset_id}",
                params={"expires_at": expires.isoformat()},
                secret_params={"link": link},
                not_after=expires,
            ),
            now,
        )
        audit.security_event(
            conn,
            None,
            info,
            svc.clock,
            action="auth.password_reset_request",
            outcome="success",
            object_id=user.user_id,
            org_id=user.org_id,
        )


def complete_reset(conn: Connection, svc: Services, info: RequestInfo, token: str, new: str) -> None:
    """Redeem a reset link once: new password, every session revoked, the account's lockouts cleared."""
    now = svc.clock.now()
    if len(token) > 100:
        raise Invalid("the link is not valid or has expired", field="token", code="bad_token")
    with conn.transaction():
        user_id = password_resets.redeem_reset(conn, secret_hash(token), now)
        user = users.get_user(conn, user_id) if user_id else None
        if user is None:
            raise Invalid("the link is not valid or has expired", field="token", code="bad_token")
        check_policy(new, email=user.email)
        users.set_password(conn, user.user_id, svc.passwords.hash(new), now)
        session_store.revoke_user_sessions(conn, user.user_id, now=now, reason="password_changed")
        login_throttle.clear(conn, f"account:{user.user_id}")
        audit.security_event(
            conn,
            None,
            info,
            svc.clock,
            action="auth.password_reset",
            outcome="success",
            object_id=user.user_id,
            org_id=user.org_id,
        )

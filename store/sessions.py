"""Sessions and bearer tokens: server-side, stored by the SHA-256 of their secret, revocable.

A session row is looked up together with its user in one query (:func:`session_principal`); the
caller decides validity (idle and absolute expiry, revocation, MFA) with its clock. Tokens work
the same way with scopes and a fixed expiry. Functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from store.connection import Connection
from store.users import is_uuid

__all__ = [
    "SessionPrincipal",
    "SessionRow",
    "TokenPrincipal",
    "TokenRow",
    "create_session",
    "create_token",
    "list_sessions",
    "list_tokens",
    "mark_mfa",
    "revoke_session",
    "revoke_token",
    "revoke_user_sessions",
    "session_principal",
    "token_principal",
    "touch_session",
    "touch_token",
]

_USER: Final = "u.user_id::text, u.org_id, u.role, u.patient_id, u.status, u.totp_enabled_at IS NOT NULL"


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    mfa_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    client_addr: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class SessionPrincipal:
    """A session and the user it belongs to, as read in one query."""

    session: SessionRow
    user_id: str
    org_id: str
    role: str
    patient_id: str | None
    status: str
    totp_enabled: bool


@dataclass(frozen=True, slots=True)
class TokenRow:
    token_id: str
    user_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenPrincipal:
    token: TokenRow
    user_id: str
    org_id: str
    role: str
    patient_id: str | None
    status: str


_SESSION: Final = (
    "s.session_id::text, s.user_id::text, s.created_at, s.last_seen_at, s.expires_at, s.mfa_at, s.revoked_at, "
    "s.revoked_reason, s.client_addr, s.user_agent"
)
_API_KEY_COLUMNS: Final = (
    "t.token_id::text, t.user_id::text, t.name, t.scopes, t.created_at, t.expires_at, t.revoked_at, t.last_used_at"
)


def _token(r: Sequence[Any]) -> TokenRow:
    return TokenRow(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], r[6], r[7])


def create_session(
    conn: Connection,
    *,
    secret_sha256: bytes,
    user_id: str,
    org_id: str,
    now: datetime,
    expires_at: datetime,
    client_addr: str | None,
    user_agent: str | None,
) -> str:
    row = conn.execute(
        "INSERT INTO sessions (secret_sha256, user_id, org_id, created_at, last_seen_at, expires_at, client_addr, "
        "user_agent) VALUES (%s, %s::uuid, %s, %s, %s, %s, %s, %s) RETURNING session_id::text",
        (secret_sha256, user_id, org_id, now, now, expires_at, client_addr, (user_agent or "")[:300] or None),
    ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return str(row[0])


def session_principal(conn: Connection, secret_sha256: bytes) -> SessionPrincipal | None:
    row = conn.execute(
        f"SELECT {_SESSION}, {_USER} FROM sessions s JOIN users u ON u.user_id = s.user_id "  # noqa: S608
        "WHERE s.secret_sha256 = %s",
        (secret_sha256,),
    ).fetchone()
    if row is None:
        return None
    return SessionPrincipal(SessionRow(*row[:10]), *row[10:])


def touch_session(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE sessions SET last_seen_at = %s WHERE session_id = %s::uuid AND last_seen_at < %s",
        (now, session_id, now),
    )


def mark_mfa(conn: Connection, session_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE sessions SET mfa_at = %s, last_seen_at = %s WHERE session_id = %s::uuid", (now, now, session_id)
    )


def revoke_session(conn: Connection, session_id: str, *, user_id: str, now: datetime, reason: str) -> bool:
    """Revoke one of ``user_id``'s sessions; False when there is no such live session."""
    if not is_uuid(session_id):
        return False
    row = conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE session_id = %s::uuid AND user_id = %s::uuid "
        "AND revoked_at IS NULL RETURNING 1",
        (now, reason, session_id, user_id),
    ).fetchone()
    return row is not None


def revoke_user_sessions(conn: Connection, user_id: str, *, now: datetime, reason: str, keep: str | None = None) -> int:
    """Revoke every live session of the user (but ``keep``); returns how many."""
    cur = conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE user_id = %s::uuid AND revoked_at IS NULL "
        "AND (%s::uuid IS NULL OR session_id <> %s::uuid)",
        (now, reason, user_id, keep, keep),
    )
    return cur.rowcount


def list_sessions(conn: Connection, user_id: str, *, now: datetime, limit: int = 100) -> list[SessionRow]:
    """The user's sessions that are neither revoked nor past their absolute expiry, newest first."""
    rows = conn.execute(
        f"SELECT {_SESSION} FROM sessions s WHERE s.user_id = %s::uuid AND s.revoked_at IS NULL "  # noqa: S608
        "AND s.expires_at > %s ORDER BY s.created_at DESC LIMIT %s",
        (user_id, now, limit),
    ).fetchall()
    return [SessionRow(*r) for r in rows]


# -- bearer tokens ---------------------------------------------------------------------------------


def create_token(
    conn: Connection,
    *,
    secret_sha256: bytes,
    user_id: str,
    org_id: str,
    name: str,
    scopes: Sequence[str],
    created_by: str,
    now: datetime,
    expires_at: datetime,
) -> TokenRow:
    row = conn.execute(
        "INSERT INTO api_tokens AS t (secret_sha256, user_id, org_id, name, scopes, created_by, "  # noqa: S608
        f"created_at, expires_at) VALUES (%s, %s::uuid, %s, %s, %s, %s::uuid, %s, %s) RETURNING {_API_KEY_COLUMNS}",
        (secret_sha256, user_id, org_id, name, sorted(set(scopes)), created_by, now, expires_at),
    ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return _token(row)


def token_principal(conn: Connection, secret_sha256: bytes) -> TokenPrincipal | None:
    row = conn.execute(
        f"SELECT {_API_KEY_COLUMNS}, u.user_id::text, u.org_id, u.role, u.patient_id, u.status "  # noqa: S608
        "FROM api_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.secret_sha256 = %s",
        (secret_sha256,),
    ).fetchone()
    if row is None:
        return None
    return TokenPrincipal(_token(row[:8]), *row[8:])


def touch_token(conn: Connection, token_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE api_tokens SET last_used_at = %s WHERE token_id = %s::uuid "
        "AND (last_used_at IS NULL OR last_used_at < %s - interval '1 minute')",
        (now, token_id, now),
    )


def list_tokens(conn: Connection, user_id: str) -> list[TokenRow]:
    rows = conn.execute(
        f"SELECT {_API_KEY_COLUMNS} FROM api_tokens t WHERE t.user_id = %s::uuid ORDER BY t.created_at DESC",  # noqa: S608
        (user_id,),
    ).fetchall()
    return [_token(r) for r in rows]


def revoke_token(conn: Connection, token_id: str, *, org_id: str, now: datetime) -> bool:
    if not is_uuid(token_id):
        return False
    row = conn.execute(
        "UPDATE api_tokens SET revoked_at = %s WHERE token_id = %s::uuid AND org_id = %s AND revoked_at IS NULL "
        "RETURNING 1",
        (now, token_id, org_id),
    ).fetchone()
    return row is not None

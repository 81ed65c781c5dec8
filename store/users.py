"""The users aggregate: accounts of an organisation, their password hash and TOTP state.

Ids are UUIDs, handed out as strings. Emails are unique across organisations (sign-in needs no
organisation name) and stored lower-case. Functions run inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from store.connection import Connection
from store.errors import Conflict

__all__ = [
    "UserRow",
    "UserUpdate",
    "admins_of",
    "claim_totp_step",
    "create_user",
    "enable_totp",
    "get_user",
    "get_user_by_email",
    "is_uuid",
    "list_users",
    "organization_exists",
    "patient_user_id",
    "reset_totp",
    "set_password",
    "set_totp_pending",
    "update_user",
]

_COLUMNS: Final = (
    "user_id::text, org_id, email, display_name, role, patient_id, status, password_hash, password_changed_at, "
    "totp_secret_sealed, totp_pending_sealed, totp_enabled_at, totp_last_step, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    org_id: str
    email: str
    display_name: str
    role: str
    patient_id: str | None
    status: str
    password_hash: str | None
    password_changed_at: datetime | None
    totp_secret_sealed: bytes | None
    totp_pending_sealed: bytes | None
    totp_enabled_at: datetime | None
    totp_last_step: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """Fields an admin may change; None leaves a field as it is."""

    display_name: str | None = None
    role: str | None = None
    status: str | None = None


def _row(r: Sequence[Any]) -> UserRow:
    return UserRow(
        str(r[0]),
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        None if r[9] is None else bytes(r[9]),
        None if r[10] is None else bytes(r[10]),
        r[11],
        r[12],
        r[13],
        r[14],
    )


def _one(conn: Connection, where: str, params: Sequence[Any]) -> UserRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE {where}", params).fetchone()  # noqa: S608 - constant SQL
    return None if row is None else _row(row)


def organization_exists(conn: Connection, org_id: str) -> bool:
    return conn.execute("SELECT 1 FROM organizations WHERE org_id = %s", (org_id,)).fetchone() is not None


def create_user(
    conn: Connection,
    *,
    org_id: str,
    email: str,
    display_name: str,
    role: str,
    now: datetime,
    patient_id: str | None = None,
    password_hash: str | None = None,
) -> UserRow:
    """A new account; :class:`Conflict` when the email is taken."""
    try:
        with conn.transaction():
            row = conn.execute(
                f"INSERT INTO users (org_id, email, display_name, role, patient_id, password_hash, "  # noqa: S608
                f"password_changed_at, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                f"RETURNING {_COLUMNS}",
                (
                    org_id,
                    email.lower(),
                    display_name,
                    role,
                    patient_id,
                    password_hash,
                    now if password_hash else None,
                    now,
                    now,
                ),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("user", email.lower(), "email already in use") from exc
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("insert returned nothing")
    return _row(row)


def get_user(conn: Connection, user_id: str, *, org_id: str | None = None) -> UserRow | None:
    """The user, or None (also for a malformed id, or one of another organisation when given)."""
    if not is_uuid(user_id):
        return None
    return _one(conn, "user_id = %s::uuid AND (%s::text IS NULL OR org_id = %s)", (user_id, org_id, org_id))


def get_user_by_email(conn: Connection, email: str) -> UserRow | None:
    return _one(conn, "email = %s", (email.lower(),))


def list_users(conn: Connection, org_id: str, *, after: tuple[str, str] | None, limit: int) -> list[UserRow]:
    """Users of an organisation by (email, id), starting after the key ``after``."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM users WHERE org_id = %s AND (%s::text IS NULL OR (email, user_id) > (%s, %s::uuid)) "  # noqa: S608
        "ORDER BY email, user_id LIMIT %s",
        (
            org_id,
            None if after is None else after[0],
            None if after is None else after[0],
            None if after is None else after[1],
            limit,
        ),
    ).fetchall()
    return [_row(r) for r in rows]


def update_user(conn: Connection, user_id: str, change: UserUpdate, now: datetime) -> UserRow | None:
    row = conn.execute(
        f"UPDATE users SET display_name = coalesce(%s, display_name), role = coalesce(%s, role), "  # noqa: S608
        f"status = coalesce(%s, status), updated_at = %s WHERE user_id = %s::uuid RETURNING {_COLUMNS}",
        (change.display_name, change.role, change.status, now, user_id),
    ).fetchone()
    return None if row is None else _row(row)


def set_password(conn: Connection, user_id: str, password_hash: str, now: datetime) -> None:
    conn.execute(
        "UPDATE users SET password_hash = %s, password_changed_at = %s, updated_at = %s WHERE user_id = %s::uuid",
        (password_hash, now, now, user_id),
    )


def set_totp_pending(conn: Connection, user_id: str, sealed: bytes, now: datetime) -> None:
    conn.execute(
        "UPDATE users SET totp_pending_sealed = %s, updated_at = %s WHERE user_id = %s::uuid", (sealed, now, user_id)
    )


def enable_totp(conn: Connection, user_id: str, now: datetime) -> None:
    """The pending secret becomes the user's second factor."""
    conn.execute(
        "UPDATE users SET totp_secret_sealed = totp_pending_sealed, totp_pending_sealed = NULL, totp_enabled_at = %s, "
        "updated_at = %s WHERE user_id = %s::uuid AND totp_pending_sealed IS NOT NULL",
        (now, now, user_id),
    )


def reset_totp(conn: Connection, user_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE users SET totp_secret_sealed = NULL, totp_pending_sealed = NULL, totp_enabled_at = NULL, "
        "totp_last_step = NULL, updated_at = %s WHERE user_id = %s::uuid",
        (now, user_id),
    )


def claim_totp_step(conn: Connection, user_id: str, step: int) -> bool:
    """Record ``step`` as used; False when it (or a later one) was used already (a replayed code)."""
    row = conn.execute(
        "UPDATE users SET totp_last_step = %s WHERE user_id = %s::uuid "
        "AND (totp_last_step IS NULL OR totp_last_step < %s) RETURNING 1",
        (step, user_id, step),
    ).fetchone()
    return row is not None


def admins_of(conn: Connection, org_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id::text FROM users WHERE org_id = %s AND role = 'admin' AND status = 'active' ORDER BY user_id",
        (org_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def is_uuid(value: str) -> bool:
    """True for a canonical UUID string (ids from URLs are checked before they reach SQL)."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, TypeError, AttributeError):
        return False


def patient_user_id(conn: Connection, org_id: str, patient_id: str) -> str | None:
    """The active account of a patient (role patient), if they have one."""
    row = conn.execute(
        "SELECT user_id::text FROM users WHERE org_id = %s AND patient_id = %s AND role = 'patient' "
        "AND status = 'active' ORDER BY created_at LIMIT 1",
        (org_id, patient_id),
    ).fetchone()
    return None if row is None else str(row[0])

"""Password reset tokens: the SHA-256 of a one-time secret, expiring, used at most once."""

from __future__ import annotations

from datetime import datetime

from store.connection import Connection

__all__ = ["create_reset", "redeem_reset"]


def create_reset(conn: Connection, *, secret_sha256: bytes, user_id: str, now: datetime, expires_at: datetime) -> str:
    """A new reset; earlier unused resets of the user stop working (only the newest link counts)."""
    conn.execute("UPDATE password_resets SET used_at = %s WHERE user_id = %s::uuid AND used_at IS NULL", (now, user_id))
    row = conn.execute(
        "INSERT INTO password_resets (secret_sha256, user_id, created_at, expires_at) VALUES (%s, %s::uuid, %s, %s) "
        "RETURNING reset_id::text",
        (secret_sha256, user_id, now, expires_at),
    ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return str(row[0])


def redeem_reset(conn: Connection, secret_sha256: bytes, now: datetime) -> str | None:
    """Mark the reset used and return its user id; None when unknown, used or expired."""
    row = conn.execute(
        "UPDATE password_resets SET used_at = %s WHERE secret_sha256 = %s AND used_at IS NULL AND expires_at > %s "
        "RETURNING user_id::text",
        (now, secret_sha256, now),
    ).fetchone()
    return None if row is None else str(row[0])

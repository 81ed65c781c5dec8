"""One-time enrolment tokens for enrolment over HTTP: bound to an organisation and a patient,
short-lived, single use. Only the SHA-256 of a token is stored. :func:`redeem` claims a token in
one statement (``UPDATE ... WHERE used_at IS NULL AND expires_at > now RETURNING``), so two
concurrent exchanges of one token cannot both succeed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from store.connection import Connection

__all__ = ["EnrolmentTokenRow", "create_token", "list_tokens", "record_agent", "redeem", "revoke_token", "token_state"]


@dataclass(frozen=True, slots=True)
class EnrolmentTokenRow:
    token_id: str
    org_id: str
    patient_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_from: str | None
    agent_id: str | None
    revoked_at: datetime | None


_COLS = (
    "token_id::text, org_id, patient_id, created_by::text, created_at, expires_at, used_at, used_from, agent_id, "
    "revoked_at"
)


def create_token(
    conn: Connection,
    *,
    secret_sha256: bytes,
    org_id: str,
    patient_id: str,
    created_by: str,
    now: datetime,
    expires_at: datetime,
) -> EnrolmentTokenRow:
    with conn.cursor(row_factory=class_row(EnrolmentTokenRow)) as cur:
        row = cur.execute(
            "INSERT INTO enrolment_tokens (secret_sha256, org_id, patient_id, created_by, created_at, expires_at) "  # noqa: S608
            f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLS}",
            (secret_sha256, org_id, patient_id, created_by, now, expires_at),
        ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return row


def redeem(
    conn: Connection, secret_sha256: bytes, *, now: datetime, client_addr: str | None
) -> EnrolmentTokenRow | None:
    """Claim the token (once, unexpired, not revoked): the row, or None. The agent id is recorded by
    :func:`record_agent` in the same transaction (a CHECK ties it to used_at)."""
    with conn.cursor(row_factory=class_row(EnrolmentTokenRow)) as cur:
        return cur.execute(
            "UPDATE enrolment_tokens SET used_at = %s, used_from = %s, agent_id = '' "  # noqa: S608
            "WHERE secret_sha256 = %s AND used_at IS NULL AND revoked_at IS NULL AND expires_at > %s "
            f"RETURNING {_COLS}",
            (now, (client_addr or "")[:64] or None, secret_sha256, now),
        ).fetchone()


def record_agent(conn: Connection, token_id: str, agent_id: str) -> None:
    conn.execute("UPDATE enrolment_tokens SET agent_id = %s WHERE token_id = %s", (agent_id, token_id))


def token_state(conn: Connection, secret_sha256: bytes) -> EnrolmentTokenRow | None:
    """The token's row whatever its state (to say why an exchange was refused, in the audit only)."""
    with conn.cursor(row_factory=class_row(EnrolmentTokenRow)) as cur:
        return cur.execute(
            f"SELECT {_COLS} FROM enrolment_tokens WHERE secret_sha256 = %s",  # noqa: S608
            (secret_sha256,),
        ).fetchone()


def list_tokens(conn: Connection, org_id: str, *, limit: int = 50) -> list[EnrolmentTokenRow]:
    with conn.cursor(row_factory=class_row(EnrolmentTokenRow)) as cur:
        return cur.execute(
            f"SELECT {_COLS} FROM enrolment_tokens WHERE org_id = %s ORDER BY created_at DESC LIMIT %s",  # noqa: S608
            (org_id, limit),
        ).fetchall()


def revoke_token(conn: Connection, token_id: str, org_id: str, *, now: datetime) -> bool:
    row = conn.execute(
        "UPDATE enrolment_tokens SET revoked_at = %s WHERE token_id::text = %s AND org_id = %s "
        "AND used_at IS NULL AND revoked_at IS NULL RETURNING 1",
        (now, token_id, org_id),
    ).fetchone()
    return row is not None

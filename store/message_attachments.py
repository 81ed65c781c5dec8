"""Message attachments (migration 0042): files sealed by the API, stored as opaque bytes.

The database never holds an attachment's plaintext: ``sealed`` is nonce, ciphertext and tag
(AES-256-GCM, :mod:`consult.messaging.attachments`), ``key_id`` names the key's fingerprint. Rows
are append-only. An attachment belongs to one thread; it is readable through a message of that
thread that carries (or carried) it, or by its uploader before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from store.connection import Connection
from store.users import is_uuid

__all__ = ["AttachmentRow", "NewAttachment", "get_attachment", "insert_attachment", "is_referenced"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAttachment:
    attachment_id: str
    thread_id: str
    org_id: str
    uploaded_by: str
    media_type: str
    size_bytes: int
    sha256: bytes
    key_id: str
    sealed: bytes


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    attachment_id: str
    thread_id: str
    org_id: str
    uploaded_by: str
    uploaded_at: datetime
    media_type: str
    size_bytes: int
    sha256: bytes
    key_id: str
    sealed: bytes


def insert_attachment(conn: Connection, a: NewAttachment, now: datetime) -> None:
    conn.execute(
        "INSERT INTO message_attachments (attachment_id, thread_id, org_id, uploaded_by, uploaded_at, media_type, "
        "size_bytes, sha256, key_id, sealed) VALUES (%s::uuid, %s::uuid, %s, %s::uuid, %s, %s, %s, %s, %s, %s)",
        (
            a.attachment_id,
            a.thread_id,
            a.org_id,
            a.uploaded_by,
            now,
            a.media_type,
            a.size_bytes,
            a.sha256,
            a.key_id,
            a.sealed,
        ),
    )


def get_attachment(conn: Connection, thread_id: str, attachment_id: str) -> AttachmentRow | None:
    """The attachment ``attachment_id`` of ``thread_id`` (None for one of another thread)."""
    if not is_uuid(attachment_id):
        return None
    with conn.cursor(row_factory=class_row(AttachmentRow)) as cur:
        return cur.execute(
            "SELECT attachment_id::text AS attachment_id, thread_id::text AS thread_id, org_id, "
            "uploaded_by::text AS uploaded_by, uploaded_at, media_type, size_bytes, sha256, key_id, sealed "
            "FROM message_attachments WHERE attachment_id = %s::uuid AND thread_id = %s::uuid",
            (attachment_id, thread_id),
        ).fetchone()


def is_referenced(conn: Connection, attachment_id: str) -> bool:
    """Whether any version of any message carries the attachment."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM message_versions WHERE attachment_id = %s::uuid)", (attachment_id,)
    ).fetchone()
    return bool(row and row[0])

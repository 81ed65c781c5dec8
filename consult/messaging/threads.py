"""Threads, participants and messages: the rules, over :mod:`store.threads`.

Who may do what (the API decides *whether the caller sees the thread* — a participant, or a staff
user with break-glass, who may only read — and calls in; these functions enforce the rest):

- a ``patient`` thread is between the patient (their active patient accounts) and the staff of the
  care teams that hold the patient; a ``care_team`` thread is about one alert, staff only, and an
  alert has at most one. Both start with those people (and their creator) as participants;
- a staff participant may add another staff member of the patient's care teams, or (to a patient
  thread) one of the patient's own accounts; nobody else can be added;
- only participants post; only the author edits or deletes, an edit appends a version and a
  deletion a tombstone version (history is kept), and a tombstone is final;
- an attachment is posted once, by its uploader, in the thread it was uploaded to.

A new message notifies each other participant through the notification outbox (in the same
transaction), with kind ``thread_message`` and only the thread id: no text, no name, no subject.
A participant who already has an unread message of the thread is not notified again.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from consult.messaging.attachments import EXTENSIONS, AttachmentCipher, check_upload, strip_metadata
from consult.messaging.errors import AttachmentRefused, MessageInvalid, NotAllowed
from consult.notify.sink import channels_for
from consult.notify.templates import THREAD_MESSAGE
from store import alerts as alert_store
from store import message_attachments as attachment_store
from store import threads as thread_store
from store import users
from store.connection import Connection
from store.errors import NotFound
from store.notification_outbox import NewNotification, enqueue
from store.notification_prefs import Recipient, get_preferences
from store.threads import ThreadRow

__all__ = [
    "MAX_BODY",
    "MAX_SUBJECT",
    "STAFF_ROLES",
    "Actor",
    "Opened",
    "add_participant",
    "delete_message",
    "edit_message",
    "open_attachment",
    "open_thread",
    "post_message",
    "upload_attachment",
]

MAX_BODY: Final = 10_000
MAX_SUBJECT: Final = 200
STAFF_ROLES: Final = frozenset({"admin", "clinician", "nurse", "care_coordinator"})


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    org_id: str
    role: str
    patient_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


@dataclass(frozen=True, slots=True)
class Opened:
    thread: ThreadRow
    participants: int
    first_message_id: str | None


def _text(value: str | None, *, field: str, limit: int, required: bool) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise MessageInvalid(f"{field} must not be empty", code="empty", field=field)
        return None
    if len(text) > limit:
        raise MessageInvalid(f"{field} is longer than {limit} characters", code="too_long", field=field)
    if any(not ch.isprintable() and ch not in "\n\t" for ch in text):
        raise MessageInvalid(f"{field} holds control characters", code="control_character", field=field)
    return text


def open_thread(
    conn: Connection,
    actor: Actor,
    *,
    patient_id: str,
    kind: str,
    subject: str,
    alert_id: int | None,
    body: str | None,
    now: datetime,
) -> Opened:
    """A new thread about ``patient_id`` (the caller has checked ``actor`` may see the patient)."""
    title = _text(subject, field="subject", limit=MAX_SUBJECT, required=True)
    assert title is not None  # noqa: S101 - required=True never returns None
    first = _text(body, field="body", limit=MAX_BODY, required=False)
    if kind == "care_team":
        if not actor.is_staff:
            raise NotAllowed("only the care team opens a care-team thread", code="staff_only")
        alert = None if alert_id is None else alert_store.get_alert(conn, alert_id)
        if alert is None or alert.patient_id != patient_id or alert.org_id != actor.org_id:
            raise MessageInvalid(
                "a care-team thread is about an alert of this patient", code="bad_alert", field="alert_id"
            )
        people = thread_store.care_team_staff(conn, actor.org_id, patient_id)
    elif kind == "patient":
        if alert_id is not None:
            raise MessageInvalid("a patient thread is not about one alert", code="bad_alert", field="alert_id")
        if not actor.is_staff and actor.patient_id != patient_id:
            raise NotAllowed("a patient writes only about themselves", code="not_self")
        people = thread_store.patient_accounts(conn, actor.org_id, patient_id)
        people += thread_store.care_team_staff(conn, actor.org_id, patient_id)
    else:
        raise MessageInvalid("kind is 'patient' or 'care_team'", code="bad_kind", field="kind")
    thread = thread_store.create_thread(
        conn,
        org_id=actor.org_id,
        patient_id=patient_id,
        kind=kind,
        alert_id=alert_id,
        subject=title,
        created_by=actor.user_id,
        now=now,
    )
    added = thread_store.add_participants(conn, thread, [actor.user_id, *people], added_by=actor.user_id, now=now)
    message_id = None
    if first is not None:
        message_id, _ = _post(conn, thread, actor, first, None, now)
    return Opened(thread, added, message_id)


def add_participant(conn: Connection, thread: ThreadRow, actor: Actor, user_id: str, now: datetime) -> bool:
    """Add ``user_id`` to the thread (True) or find them there already (False)."""
    if not actor.is_staff or not thread_store.is_participant(conn, thread.thread_id, actor.user_id):
        raise NotAllowed("only a staff participant adds people to a thread", code="not_participant")
    user = users.get_user(conn, user_id, org_id=thread.org_id)
    eligible = False
    if user is not None and user.status == "active":
        if user.role == "patient":
            eligible = thread.kind == "patient" and user.patient_id == thread.patient_id
        elif user.role in STAFF_ROLES:
            eligible = user.user_id in thread_store.care_team_staff(conn, thread.org_id, thread.patient_id)
    if not eligible or user is None:
        raise MessageInvalid(
            "only the patient's own account or a member of the patient's care teams can take part",
            code="not_eligible",
            field="user_id",
        )
    return thread_store.add_participants(conn, thread, [user.user_id], added_by=actor.user_id, now=now) > 0


def _must_take_part(conn: Connection, thread: ThreadRow, actor: Actor) -> None:
    if not thread_store.is_participant(conn, thread.thread_id, actor.user_id):
        raise NotAllowed("only participants write in a thread", code="not_participant")


def post_message(
    conn: Connection, thread: ThreadRow, actor: Actor, *, body: str | None, attachment_id: str | None, now: datetime
) -> tuple[str, int]:
    """Post a message (text, an uploaded attachment, or both); returns (message id, seq)."""
    _must_take_part(conn, thread, actor)
    text = _text(body, field="body", limit=MAX_BODY, required=attachment_id is None)
    return _post(conn, thread, actor, text, attachment_id, now)


def _post(
    conn: Connection, thread: ThreadRow, actor: Actor, text: str | None, attachment_id: str | None, now: datetime
) -> tuple[str, int]:
    thread_store.lock_thread(conn, thread.thread_id)
    if attachment_id is not None:
        found = attachment_store.get_attachment(conn, thread.thread_id, attachment_id)
        if found is None or found.uploaded_by != actor.user_id:
            raise AttachmentRefused("no such attachment of yours in this thread", code="not_found")
        if attachment_store.is_referenced(conn, found.attachment_id):
            raise AttachmentRefused("the attachment was sent already", code="already_sent")
    message_id, seq = thread_store.append_message(
        conn, thread.thread_id, author_id=actor.user_id, body=text, attachment_id=attachment_id, now=now
    )
    _notify(conn, thread, actor, message_id, seq, now)
    return message_id, seq


def _own_message(conn: Connection, thread: ThreadRow, actor: Actor, message_id: str) -> thread_store.MessageRow:
    _must_take_part(conn, thread, actor)
    thread_store.lock_thread(conn, thread.thread_id)
    msg = thread_store.get_message(conn, thread.thread_id, message_id)
    if msg is None:
        raise NotFound("message", message_id)
    if msg.author_id != actor.user_id:
        raise NotAllowed("only the author changes a message", code="not_author")
    if msg.deleted:
        raise NotAllowed("the message was deleted", code="deleted")
    return msg


def edit_message(
    conn: Connection, thread: ThreadRow, actor: Actor, message_id: str, *, body: str, now: datetime
) -> int:
    """A new version of the author's message with ``body`` (its attachment stays); returns its number."""
    msg = _own_message(conn, thread, actor, message_id)
    text = _text(body, field="body", limit=MAX_BODY, required=msg.attachment_id is None)
    return thread_store.append_version(
        conn, msg.message_id, body=text, attachment_id=msg.attachment_id, deleted=False, by=actor.user_id, now=now
    )


def delete_message(conn: Connection, thread: ThreadRow, actor: Actor, message_id: str, *, now: datetime) -> int:
    """A tombstone version of the author's message; earlier versions are kept. Returns its number."""
    msg = _own_message(conn, thread, actor, message_id)
    return thread_store.append_version(
        conn, msg.message_id, body=None, attachment_id=None, deleted=True, by=actor.user_id, now=now
    )


def upload_attachment(
    conn: Connection,
    thread: ThreadRow,
    actor: Actor,
    *,
    declared_type: str | None,
    data: bytes,
    max_bytes: int,
    cipher: AttachmentCipher,
    now: datetime,
) -> tuple[str, str, int]:
    """Check, strip (image metadata), seal and store a file for a later message; returns
    (attachment id, media type, stored size)."""
    _must_take_part(conn, thread, actor)
    media_type = check_upload(declared_type, data, max_bytes=max_bytes)
    data = strip_metadata(media_type, data)
    attachment_id = str(uuid.uuid4())
    sealed = cipher.seal(data, attachment_id=attachment_id, thread_id=thread.thread_id, media_type=media_type)
    attachment_store.insert_attachment(
        conn,
        attachment_store.NewAttachment(
            attachment_id=attachment_id,
            thread_id=thread.thread_id,
            org_id=thread.org_id,
            uploaded_by=actor.user_id,
            media_type=media_type,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).digest(),
            key_id=cipher.key_id,
            sealed=sealed,
        ),
        now,
    )
    return attachment_id, media_type, len(data)


def open_attachment(
    conn: Connection, thread: ThreadRow, reader_id: str, attachment_id: str, cipher: AttachmentCipher
) -> tuple[str, str, bytes]:
    """(media type, file name, content) of an attachment the reader may see: one a message of the
    thread carries or carried, or the reader's own upload not sent yet."""
    found = attachment_store.get_attachment(conn, thread.thread_id, attachment_id)
    if found is None:
        raise NotFound("attachment", attachment_id)
    if found.uploaded_by != reader_id and not attachment_store.is_referenced(conn, found.attachment_id):
        raise NotFound("attachment", attachment_id)
    data = cipher.open(
        found.sealed,
        key_id=found.key_id,
        attachment_id=found.attachment_id,
        thread_id=found.thread_id,
        media_type=found.media_type,
    )
    if hashlib.sha256(data).digest() != found.sha256:  # pragma: no cover - GCM already authenticates it
        raise AttachmentRefused("the attachment does not match its digest", code="tampered")
    return found.media_type, f"attachment-{found.attachment_id}.{EXTENSIONS[found.media_type]}", data


def _notify(conn: Connection, thread: ThreadRow, actor: Actor, message_id: str, seq: int, now: datetime) -> int:
    """Queue a ``thread_message`` notification for each other participant who had nothing unread."""
    others = [u for u in thread_store.participant_ids(conn, thread.thread_id) if u != actor.user_id]
    if not others:
        return 0
    waiting = thread_store.unread_before(conn, thread.thread_id, others, seq)
    queued = 0
    for uid in others:
        if uid in waiting:
            continue
        user = users.get_user(conn, uid, org_id=thread.org_id)
        if user is None or user.status != "active":
            continue
        recipient = Recipient(uid, user.role, get_preferences(conn, uid))
        for channel in channels_for(recipient, every_reachable=False):
            outbox_id = enqueue(
                conn,
                NewNotification(
                    org_id=thread.org_id,
                    channel=channel,
                    recipient_user_id=uid,
                    kind=THREAD_MESSAGE,
                    idempotency_key=f"thread_message:{message_id}:{uid}:{channel}",
                    params={"thread_id": thread.thread_id},
                ),
                now,
            )
            queued += outbox_id is not None
    return queued

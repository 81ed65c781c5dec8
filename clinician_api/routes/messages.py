"""``/api/v1/threads``: secure messaging between a patient and their care team, and among the care
team about an alert (the rules are :mod:`consult.messaging.threads`).

Who sees a thread (the ``thread`` resolver of :mod:`clinician_api.access`): an active participant
— a patient only in their own patient thread, a staff participant only while the patient is still
in their panel (or under break-glass) — and, read-only, a staff user with an unexpired break-glass
grant for the patient. Anyone else gets the same 404 as for a thread that does not exist, and one
``denied`` audit row. Every read and write writes one audit row in the transaction of its work.

Attachments are uploaded first (``POST .../attachments`` with the file as the body and its type as
``Content-Type``), then sent with a message; they are served only through the thread's guard.
``GET /threads/stream`` sends server-sent events with ids only (``message``, ``participant``);
the page fetches what changed through the audited routes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from clinician_api.access import Denied, Resolved, guard, patient_basis, register
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Services, Svc
from clinician_api.errors import Conflict, Forbidden, Invalid
from clinician_api.errors import NotFound as ApiNotFound
from clinician_api.messaging_live import MessageHub, MessageSubscription
from clinician_api.security import Principal, require
from consult.messaging import threads as messaging
from consult.messaging.attachments import ALLOWED_TYPES, AttachmentCipher
from consult.messaging.errors import AttachmentRefused, AttachmentUnreadable, MessageInvalid, NotAllowed
from store import threads as thread_store
from store.channels import MessageNotice
from store.connection import Connection
from store.threads import MessageRow, ParticipantRow, ThreadRow

__all__ = ["Messaging", "router"]

router = APIRouter(tags=["messages"])

Messenger = Annotated[Principal, Depends(require(Permission.MESSAGES))]
StreamReader = Annotated[Principal, Depends(require(Permission.MESSAGES, touch=False))]
PatientForThread = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.MESSAGES))]
_READY_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Messaging:
    """What messaging adds to the app's services (``app.state.messaging``)."""

    hub: MessageHub
    cipher: AttachmentCipher


def messaging_services(request: Request) -> Messaging:
    found: Messaging = request.app.state.messaging
    return found


Msg = Annotated[Messaging, Depends(messaging_services)]


@register("thread")
def _thread(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    t = thread_store.get_thread(conn, raw)
    if t is None:
        return Denied()
    if t.org_id != who.org_id:
        return Denied(t.patient_id)
    if thread_store.is_participant(conn, t.thread_id, who.user_id):
        if who.is_patient:
            ok = t.kind == "patient" and who.patient_id == t.patient_id
        else:
            ok = patient_basis(conn, who, t.patient_id, now) is not None
        if ok:
            return Resolved("thread", t.thread_id, t.org_id, t.patient_id, "participant", t)
    elif not who.is_patient and patient_basis(conn, who, t.patient_id, now) == "break_glass":
        return Resolved("thread", t.thread_id, t.org_id, t.patient_id, "break_glass", t)
    return Denied(t.patient_id)


ThreadAccess = Annotated[Resolved, Depends(guard("thread", "thread_id", Permission.MESSAGES))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewThreadIn(Strict):
    kind: Literal["patient", "care_team"] = "patient"
    subject: str = Field(min_length=1, max_length=200)
    alert_id: int | None = Field(default=None, ge=1)
    body: str | None = Field(default=None, max_length=messaging.MAX_BODY)


class MessageIn(Strict):
    body: str | None = Field(default=None, max_length=messaging.MAX_BODY)
    attachment_id: str | None = Field(default=None, max_length=36)


class EditIn(Strict):
    body: str = Field(max_length=messaging.MAX_BODY)


class ReadIn(Strict):
    through_seq: int = Field(ge=0)


class ParticipantIn(Strict):
    user_id: str = Field(max_length=36)


class ThreadOut(BaseModel):
    thread_id: str
    patient_id: str
    kind: str
    alert_id: int | None
    subject: str
    created_at: datetime
    last_seq: int
    last_message_at: datetime | None
    unread: int = 0


class ParticipantOut(BaseModel):
    user_id: str
    display_name: str
    role: str
    read_seq: int
    read_at: datetime | None


class AttachmentOut(BaseModel):
    attachment_id: str
    media_type: str
    url: str


class MessageOut(BaseModel):
    message_id: str
    seq: int
    author_id: str
    author_name: str
    created_at: datetime
    version: int
    edited_at: datetime | None
    body: str | None
    attachment: AttachmentOut | None
    deleted: bool
    read_by: list[str] = Field(description="Participants other than the author who have read it.")


class ThreadDetail(ThreadOut):
    basis: str = Field(description="'participant', or 'break_glass' (read only).")
    can_write: bool
    my_read_seq: int
    participants: list[ParticipantOut]
    messages: list[MessageOut]


class Posted(BaseModel):
    message_id: str
    seq: int


class VersionOut(BaseModel):
    version: int
    body: str | None
    attachment_id: str | None
    deleted: bool
    at: datetime
    by_user: str


class Versioned(BaseModel):
    message_id: str
    version: int


class Uploaded(BaseModel):
    attachment_id: str
    media_type: str
    size_bytes: int


class Unread(BaseModel):
    unread: int


def _actor(who: Principal) -> messaging.Actor:
    return messaging.Actor(who.user_id, who.org_id, who.role, who.patient_id)


@contextmanager
def _rules() -> Iterator[None]:
    """Messaging's refusals as API errors (inside ``recorded``: a refusal leaves a 'failed' row)."""
    try:
        yield
    except MessageInvalid as exc:
        raise Invalid(exc.detail, field=exc.field, code=exc.code) from exc
    except NotAllowed as exc:
        raise Forbidden(exc.detail, code=exc.code) from exc
    except AttachmentRefused as exc:
        if exc.code == "too_large":
            raise _TooLarge(exc.detail) from exc
        if exc.code in ("empty", "malformed"):
            raise Invalid(exc.detail, field="body", code=exc.code) from exc
        if exc.code == "not_found":
            raise Invalid(exc.detail, field="attachment_id", code="attachment_not_found") from exc
        if exc.code == "already_sent":
            raise Conflict(exc.detail, code=exc.code) from exc
        raise _Unsupported(exc.detail, code=exc.code) from exc
    except AttachmentUnreadable as exc:
        raise Conflict("the attachment cannot be opened", code=f"attachment_{exc.code}") from exc


class _TooLarge(Invalid):
    status = 413
    title = "Content Too Large"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="body", code="too_large")


class _Unsupported(Invalid):
    status = 415
    title = "Unsupported Media Type"


def _thread_out(t: ThreadRow | thread_store.ThreadSummary, unread: int = 0) -> dict[str, Any]:
    return {
        "thread_id": t.thread_id,
        "patient_id": t.patient_id,
        "kind": t.kind,
        "alert_id": t.alert_id,
        "subject": t.subject,
        "created_at": t.created_at,
        "last_seq": t.last_seq,
        "last_message_at": t.last_message_at,
        "unread": unread,
    }


def _message_out(m: MessageRow, people: list[ParticipantRow]) -> MessageOut:
    attachment = None
    if m.attachment_id is not None and m.media_type is not None:
        url = f"/api/v1/threads/{m.thread_id}/attachments/{m.attachment_id}"
        attachment = AttachmentOut(attachment_id=m.attachment_id, media_type=m.media_type, url=url)
    return MessageOut(
        message_id=m.message_id,
        seq=m.seq,
        author_id=m.author_id,
        author_name=m.author_name,
        created_at=m.created_at,
        version=m.version,
        edited_at=m.edited_at,
        body=m.body,
        attachment=attachment,
        deleted=m.deleted,
        read_by=[p.user_id for p in people if p.user_id != m.author_id and p.read_seq >= m.seq],
    )


def _write_access(target: Resolved) -> None:
    if target.basis != "participant":
        raise Forbidden("break-glass access reads a thread; only participants write", code="read_only")


# -- the stream first: /threads/stream must not be taken for a thread id ----------------------------


def _followed(who: StreamReader, conn: Db, svc: Svc, info: Info) -> list[str]:
    with recorded(conn, who, info, svc.clock, action="messages.stream", object_type="thread_list") as rec:
        ids = thread_store.thread_ids_of(conn, who.user_id, who.org_id)
        rec.reason = f"{len(ids)} threads"
    return ids


def _event(name: str, data: dict[str, object]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _notice(n: MessageNotice, me: str) -> str:
    if n.kind == "p":
        return _event("participant", {"thread_id": n.thread_id, "active": n.active})
    data: dict[str, object] = {
        "thread_id": n.thread_id,
        "message_id": n.message_id,
        "seq": n.seq,
        "version": n.version,
        "deleted": n.deleted,
        "mine": n.author_id == me,
    }
    return _event("message", data)


async def _events(svc: Services, hub: MessageHub, who: Principal, sub: MessageSubscription) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + svc.settings.api_stream_max_s
    try:
        await asyncio.wait_for(hub.ready.wait(), _READY_WAIT_S)
    except TimeoutError:
        yield _event("resync", {"reason": "listener_unavailable"})
    yield _event("ready", {"retry_ms": 3000})
    while (remaining := deadline - loop.time()) > 0:
        try:
            item = await asyncio.wait_for(sub.queue.get(), min(svc.settings.api_stream_ping_s, remaining))
        except TimeoutError:
            yield ": ping\n\n"
            continue
        if item == "overflow":
            yield _event("overflow", {})
            return
        if item == "resync":
            yield _event("resync", {"reason": "listener_reconnected"})
            continue
        assert isinstance(item, MessageNotice)  # noqa: S101 - the queue holds notices and markers only
        yield _notice(item, who.user_id)
    yield _event("end", {"reason": "max_duration"})


@router.get(
    "/threads/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="Live updates of my threads (server-sent events, ids only)",
)
async def stream(
    who: StreamReader, followed: Annotated[list[str], Depends(_followed)], svc: Svc, msg: Msg
) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        with msg.hub.subscribe(who.org_id, who.user_id, followed) as sub:
            async for chunk in _events(svc, msg.hub, who, sub):
                yield chunk

    return StreamingResponse(body(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


@router.get("/threads", response_model=list[ThreadOut], summary="My threads, latest first, with unread counts")
def my_threads(
    who: Messenger, conn: Db, svc: Svc, info: Info, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[ThreadOut]:
    with recorded(conn, who, info, svc.clock, action="threads.read", object_type="thread_list") as rec:
        rows = thread_store.my_threads(conn, who.user_id, who.org_id, limit=limit)
        rec.subjects = sorted({r.patient_id for r in rows})
    return [ThreadOut(**_thread_out(r, r.unread)) for r in rows]


@router.get("/threads/unread", response_model=Unread, summary="How many messages of others I have not read")
def unread(who: Messenger, conn: Db, svc: Svc, info: Info) -> Unread:
    with recorded(conn, who, info, svc.clock, action="threads.unread", object_type="thread_list"):
        n = thread_store.unread_total(conn, who.user_id, who.org_id)
    return Unread(unread=n)


@router.post(
    "/patients/{patient_id}/threads",
    response_model=ThreadDetail,
    status_code=201,
    summary="Open a thread with the patient (kind 'patient') or among the care team about an alert",
)
def open_thread(body: NewThreadIn, target: PatientForThread, conn: Db, svc: Svc, info: Info) -> ThreadDetail:
    who = target.caller
    if target.basis not in ("self", "panel"):
        raise Forbidden("open threads about patients of your own panel", code="not_panel")
    with (
        recorded(
            conn, who, info, svc.clock, action="thread.create", object_type="thread", patient_id=target.patient_id
        ) as rec,
        _rules(),
    ):
        opened = messaging.open_thread(
            conn,
            _actor(who),
            patient_id=target.object_id,
            kind=body.kind,
            subject=body.subject,
            alert_id=body.alert_id,
            body=body.body,
            now=svc.clock.now(),
        )
        rec.object_id = opened.thread.thread_id
        detail = _detail(conn, opened.thread, who, "participant")
    return detail


def _detail(
    conn: Connection, t: ThreadRow, who: Principal, basis: str, *, after_seq: int = 0, limit: int = 500
) -> ThreadDetail:
    current = thread_store.get_thread(conn, t.thread_id) or t
    people = thread_store.participants(conn, t.thread_id)
    messages = thread_store.list_messages(conn, t.thread_id, after_seq=after_seq, limit=limit)
    mine = next((p.read_seq for p in people if p.user_id == who.user_id), 0)
    unread_n = thread_store.unread_in(conn, t.thread_id, who.user_id) if basis == "participant" else 0
    return ThreadDetail(
        **_thread_out(current, unread_n),
        basis=basis,
        can_write=basis == "participant",
        my_read_seq=mine,
        participants=[ParticipantOut(**_participant(p)) for p in people],
        messages=[_message_out(m, people) for m in messages],
    )


def _participant(p: ParticipantRow) -> dict[str, Any]:
    return {
        "user_id": p.user_id,
        "display_name": p.display_name,
        "role": p.role,
        "read_seq": p.read_seq,
        "read_at": p.read_at,
    }


@router.get("/threads/{thread_id}", response_model=ThreadDetail, summary="A thread: participants and messages")
def read_thread(
    target: ThreadAccess,
    conn: Db,
    svc: Svc,
    info: Info,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
) -> ThreadDetail:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="thread.read",
        object_type="thread",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        detail = _detail(conn, target.row, target.caller, target.basis, after_seq=after_seq, limit=limit)
    return detail


def _recorded(target: Resolved, conn: Connection, svc: Services, info: Any, action: str, object_type: str) -> Any:
    return recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=action,
        object_type=object_type,
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    )


@router.post("/threads/{thread_id}/messages", response_model=Posted, status_code=201, summary="Post a message")
def post_message(body: MessageIn, target: ThreadAccess, conn: Db, svc: Svc, info: Info) -> Posted:
    _write_access(target)
    with _recorded(target, conn, svc, info, "message.create", "message") as rec, _rules():
        message_id, seq = messaging.post_message(
            conn,
            target.row,
            _actor(target.caller),
            body=body.body,
            attachment_id=body.attachment_id,
            now=svc.clock.now(),
        )
        rec.object_id = message_id
    return Posted(message_id=message_id, seq=seq)


@router.patch(
    "/threads/{thread_id}/messages/{message_id}",
    response_model=Versioned,
    summary="Edit my message (a new version; the earlier ones are kept)",
)
def edit_message(message_id: str, body: EditIn, target: ThreadAccess, conn: Db, svc: Svc, info: Info) -> Versioned:
    _write_access(target)
    with _recorded(target, conn, svc, info, "message.edit", "message") as rec, _rules():
        rec.object_id = message_id[:200]
        version = messaging.edit_message(
            conn, target.row, _actor(target.caller), message_id, body=body.body, now=svc.clock.now()
        )
    return Versioned(message_id=message_id, version=version)


@router.delete(
    "/threads/{thread_id}/messages/{message_id}",
    response_model=Versioned,
    summary="Delete my message (a tombstone version; the history is kept)",
)
def delete_message(message_id: str, target: ThreadAccess, conn: Db, svc: Svc, info: Info) -> Versioned:
    _write_access(target)
    with _recorded(target, conn, svc, info, "message.delete", "message") as rec, _rules():
        rec.object_id = message_id[:200]
        version = messaging.delete_message(conn, target.row, _actor(target.caller), message_id, now=svc.clock.now())
    return Versioned(message_id=message_id, version=version)


@router.get(
    "/threads/{thread_id}/messages/{message_id}/versions",
    response_model=list[VersionOut],
    summary="Every version of a message, the original first",
)
def message_versions(message_id: str, target: ThreadAccess, conn: Db, svc: Svc, info: Info) -> list[VersionOut]:
    with _recorded(target, conn, svc, info, "message.versions", "message") as rec:
        rec.object_id = message_id[:200]
        found = thread_store.get_message(conn, target.object_id, message_id)
        if found is None:
            raise ApiNotFound()
        rows = thread_store.list_versions(conn, found.message_id)
    return [VersionOut(**_version(v)) for v in rows]


def _version(v: thread_store.VersionRow) -> dict[str, Any]:
    return {
        "version": v.version,
        "body": v.body,
        "attachment_id": v.attachment_id,
        "deleted": v.deleted,
        "at": v.at,
        "by_user": v.by_user,
    }


@router.post("/threads/{thread_id}/read", response_model=ReadIn, summary="Mark the thread read up to a message")
def mark_read(body: ReadIn, target: ThreadAccess, conn: Db, svc: Svc, info: Info) -> ReadIn:
    _write_access(target)
    with _recorded(target, conn, svc, info, "thread.mark_read", "thread"):
        mark = thread_store.mark_read(
            conn, target.object_id, target.caller.user_id, through_seq=body.through_seq, now=svc.clock.now()
        )
    return ReadIn(through_seq=mark)


@router.post(
    "/threads/{thread_id}/participants",
    response_model=list[ParticipantOut],
    summary="Add the patient's account or a member of the patient's care teams",
)
def add_participant(body: ParticipantIn, target: ThreadAccess, conn: Db, svc: Svc, info: Info) -> list[ParticipantOut]:
    _write_access(target)
    with _recorded(target, conn, svc, info, "thread.participant_add", "thread") as rec, _rules():
        rec.reason = f"user {body.user_id}"
        messaging.add_participant(conn, target.row, _actor(target.caller), body.user_id, svc.clock.now())
        people = thread_store.participants(conn, target.object_id)
    return [ParticipantOut(**_participant(p)) for p in people]


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post(
    "/threads/{thread_id}/attachments",
    response_model=Uploaded,
    status_code=201,
    summary="Upload a file (the request body; JPEG, PNG or PDF) to send with a message",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in ALLOWED_TYPES},
        }
    },
)
def upload_attachment(
    request: Request,
    data: Annotated[bytes, Depends(_raw_body)],
    target: ThreadAccess,
    conn: Db,
    svc: Svc,
    info: Info,
    msg: Msg,
) -> Uploaded:
    _write_access(target)
    with _recorded(target, conn, svc, info, "attachment.upload", "message_attachment") as rec, _rules():
        attachment_id, media_type, size = messaging.upload_attachment(
            conn,
            target.row,
            _actor(target.caller),
            declared_type=request.headers.get("content-type"),
            data=data,
            max_bytes=svc.settings.api_attachment_max_bytes,
            cipher=msg.cipher,
            now=svc.clock.now(),
        )
        rec.object_id = attachment_id
    return Uploaded(attachment_id=attachment_id, media_type=media_type, size_bytes=size)


@router.get(
    "/threads/{thread_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "application/pdf": {}}}},
    summary="An attachment of the thread (decrypted for a reader of the thread)",
)
def read_attachment(attachment_id: str, target: ThreadAccess, conn: Db, svc: Svc, info: Info, msg: Msg) -> Response:
    with _recorded(target, conn, svc, info, "attachment.read", "message_attachment") as rec, _rules():
        rec.object_id = attachment_id[:200]
        media_type, name, data = messaging.open_attachment(
            conn, target.row, target.caller.user_id, attachment_id, msg.cipher
        )
    disposition = "inline" if media_type.startswith("image/") else "attachment"
    return Response(
        content=data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'{disposition}; filename="{name}"',
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )

"""Video consultations in the app: the signalling hub of this process, its join-link signer, and the
room directory that audits every join.

:func:`start_video` builds them in the app's lifespan (a background task expires reconnect graces)
and :meth:`Video.stop` closes every call connection at shutdown. The WebSocket route
(:mod:`clinician_api.routes.call`) sets :data:`CALLER` (who is signed in on that socket, the
request facts) before it hands frames to the hub; the hub looks links up in a worker thread, which
inherits the context, so :class:`AuditedDirectory` knows whom to write in the audit row and can
refuse a clinician's link opened without that clinician's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from clinician_api.context import RequestInfo, Services
from clinician_api.security import Principal
from consult.errors import JoinRefused
from consult.video.hub import SignallingHub
from consult.video.links import JoinClaims, JoinLinkSigner
from consult.video.rooms import PgRoomDirectory, grant_for
from consult.video.settings import VideoSettings
from consult.video.signalling import JoinGrant
from rpm_core.clock import Clock
from store import audit as audit_store
from store import consult_rooms as rooms_db
from store.audit import AuditEntry
from store.connection import Connection
from store.users import is_uuid

__all__ = ["CALLER", "AuditedDirectory", "CallCaller", "Video", "link_signer", "start_video"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallCaller:
    """Who opened a call WebSocket: the signed-in user (None for a patient or guest with a link)."""

    who: Principal | None
    info: RequestInfo


CALLER: ContextVar[CallCaller | None] = ContextVar("vigil_call_caller", default=None)


def link_signer(settings: VideoSettings, fallback: SecretStr | None) -> JoinLinkSigner:
    """The join-link signer: ``video_link_secret`` or, unset, the API's secret key (links.py derives
    its own HMAC key from it with HKDF, so the key serves no other purpose)."""
    return JoinLinkSigner.from_settings(settings, fallback=fallback)


class AuditedDirectory(PgRoomDirectory):
    """The room directory, plus: one audit row per join (``consult.join``: success or denied), and a
    clinician's seat joins only from that clinician's own signed-in session."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection]], clock: Clock) -> None:
        super().__init__(connect)
        self._connect_fn = connect
        self._clock = clock

    def grant(self, claims: JoinClaims) -> JoinGrant:
        caller = CALLER.get()
        with self._connect_fn() as conn:
            grant = grant_for(conn, claims)
            room = rooms_db.get_room(conn, claims.room_id)
            participant = rooms_db.get_participant(conn, claims.participant_id)
            if grant.role == "clinician":
                who = caller.who if caller is not None else None
                if who is None or participant is None or who.user_id != participant.user_id:
                    raise JoinRefused("not_signed_in", room_id=claims.room_id, participant_id=claims.participant_id)
            with conn.transaction():
                self._audit(conn, caller, room, participant, "success", None)
            return grant

    def refused(self, *, at: datetime, room_id: str, participant_id: str | None, why: str) -> None:
        """Every refused join: recorded (``consult_join_refusals``) and audited as denied."""
        super().refused(at=at, room_id=room_id, participant_id=participant_id, why=why)
        caller = CALLER.get()
        with self._connect_fn() as conn, conn.transaction():
            room = rooms_db.get_room(conn, room_id)
            participant = rooms_db.get_participant(conn, participant_id) if participant_id else None
            self._audit(conn, caller, room, participant, "denied", why, object_id=room_id)

    def _audit(
        self,
        conn: Connection,
        caller: CallCaller | None,
        room: rooms_db.RoomRow | None,
        participant: rooms_db.ParticipantRow | None,
        outcome: str,
        why: str | None,
        *,
        object_id: str | None = None,
    ) -> None:
        who = caller.who if caller is not None else None
        info = caller.info if caller is not None else None
        actor = who.user_id if who is not None else None
        if actor is None and participant is not None and participant.user_id and is_uuid(participant.user_id):
            actor = participant.user_id
        seat = f"participant {participant.participant_id} ({participant.role})" if participant else None
        reason = "; ".join(x for x in (why, seat) if x) or None
        audit_store.append(
            conn,
            AuditEntry(
                at=self._clock.now(),
                action="consult.join",
                object_type="consult_room",
                outcome=outcome,  # type: ignore[arg-type]
                org_id=room.org_id if room is not None else (who.org_id if who is not None else None),
                actor_id=actor,
                actor_role=who.role if who is not None else (participant.role if participant else None),
                patient_id=room.patient_id if room is not None else None,
                object_id=(room.room_id if room is not None else object_id or "")[:200],
                basis="link",
                reason=reason,
                client_addr=info.client_addr if info is not None else None,
                request_id=info.request_id if info is not None else None,
            ),
        )


@dataclass
class Video:
    hub: SignallingHub
    signer: JoinLinkSigner
    settings: VideoSettings
    ticker: asyncio.Task[None]

    async def stop(self) -> None:
        self.ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.ticker
        await self.hub.close()


def start_video(svc: Services) -> Video:
    """The hub of this process (call from the lifespan, on the event loop)."""
    settings = svc.settings
    signer = link_signer(settings, settings.api_secret_key)
    directory = AuditedDirectory(svc.pool.connection, svc.clock)
    hub = SignallingHub(settings=settings, signer=signer, directory=directory, clock=svc.clock)
    ticker = asyncio.create_task(hub.run_ticks(), name="vigil-video-ticks")
    return Video(hub, signer, settings, ticker)

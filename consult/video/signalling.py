"""The waiting room and signalling of one video room: a pure state machine (no I/O, time passed in).

A transport (the app's WebSocket route, or a test harness) feeds it events and performs the effects
it returns, in order:

- :meth:`CallRoom.open` a connection opened; :meth:`CallRoom.receive` one raw frame arrived;
  :meth:`CallRoom.closed` the connection went away; :meth:`CallRoom.tick` time passed.
- A ``join`` frame yields :class:`VerifyJoin`: the shell checks the token (signature, expiry, room,
  and the participant's generation in the database) and answers with :meth:`CallRoom.join_verified`
  or :meth:`CallRoom.join_refused`.
- Effects: :class:`Send` a message to a connection, :class:`Close` a connection, :class:`Record` a
  call event (store it), :class:`VerifyJoin`.

Rules (docs/video.md has the message schemas):

- A clinician joins straight into the call. Everyone else (patient, interpreter, family) waits in the
  waiting room until an in-call clinician admits them; nothing is relayed to or from a waiting
  participant except their own ``joined``/``admitted``/``ended`` and errors.
- When someone enters the call, each participant already in it gets ``peer-joined`` and sends an
  offer to the newcomer (one offerer per pair: no glare). Offers, answers and candidates are relayed
  only between two connected in-call participants, addressed by participant id.
- A participant whose connection drops keeps their seat (waiting or in the call) for the reconnect
  grace; rejoining within it resumes without a new admission. After it they have left.
- Every inbound frame is validated; a refused one gets an ``error`` (never an exception). Too many
  refused frames, or frames faster than the rate limit, close the connection.
- A room holds at most four participants (a peer-to-peer mesh: each pair negotiates).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from consult.errors import MessageRefused
from consult.video.protocol import (
    PROTOCOL_VERSION,
    Admit,
    Answer,
    Chat,
    EndCall,
    IceCandidate,
    Inbound,
    Join,
    Leave,
    Limits,
    Offer,
    Ping,
    RefreshIce,
    error_message,
    parse_inbound,
)
from store.consult_rooms import NewCallEvent

__all__ = [
    "MAX_PARTICIPANTS",
    "CallRoom",
    "Close",
    "CloseCode",
    "Effect",
    "JoinGrant",
    "Record",
    "Role",
    "RoomPolicy",
    "SeatState",
    "Send",
    "VerifyJoin",
]

MAX_PARTICIPANTS: Final = 4
Role = Literal["patient", "clinician", "interpreter", "family"]


class CloseCode(enum.IntEnum):
    """WebSocket close codes (the application range 4000-4999, and 1000 for a normal leave)."""

    LEFT = 1000
    GOING_AWAY = 1001  # the server shuts down (set by the shell); clients reconnect within the grace
    PROTOCOL = 4400  # too many refused messages, or no join in time
    REFUSED = 4403  # the join link was refused, or the room is full
    REPLACED = 4409  # the same participant connected again
    ENDED = 4410  # a clinician ended the call
    RATE = 4429  # messages faster than the rate limit, repeatedly
    SLOW = 4508  # the connection did not read its messages (set by the shell)
    INTERNAL = 4500  # a bug: the shell closes the connection and keeps the room


class SeatState(enum.StrEnum):
    WAITING = "waiting"
    IN_CALL = "in-call"


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """Who a verified join link admits to this room (from the participant's database row)."""

    room_id: str
    participant_id: str
    role: Role
    label: str | None = None
    scheduled_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Send:
    conn_id: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    conn_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    event: NewCallEvent


@dataclass(frozen=True, slots=True)
class VerifyJoin:
    conn_id: str
    token: str
    resume: bool


Effect = Send | Close | Record | VerifyJoin


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    limits: Limits = field(default_factory=Limits)
    reconnect_grace_s: float = 30.0
    join_timeout_s: float = 15.0
    rate_per_s: float = 50.0
    rate_burst: int = 200
    max_errors: int = 50


@dataclass(slots=True)
class _Conn:
    opened_at: datetime
    tokens: float
    last: datetime
    errors: int = 0
    participant_id: str | None = None
    verifying: bool = False


@dataclass(slots=True)
class _Seat:
    grant: JoinGrant
    state: SeatState
    conn_id: str | None
    in_call_since: datetime | None = None
    disconnected_at: datetime | None = None

    def peer_info(self) -> dict[str, Any]:
        return {"participant_id": self.grant.participant_id, "role": self.grant.role, "label": self.grant.label}


IceProvider = Callable[[JoinGrant, datetime], list[dict[str, Any]]]


class CallRoom:
    """The live state of one room. Not thread-safe: the shell feeds one room's events one at a time."""

    def __init__(self, room_id: str, *, policy: RoomPolicy, ice_servers: IceProvider) -> None:
        self.room_id = room_id
        self._policy = policy
        self._ice = ice_servers
        self._conns: dict[str, _Conn] = {}
        self._seats: dict[str, _Seat] = {}
        self._ended = False
        self._chat_seq = 0

    # ---- queries -------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def is_idle(self) -> bool:
        """No connection and no seat: the shell may forget this room."""
        return not self._conns and not self._seats

    def seat_state(self, participant_id: str) -> SeatState | None:
        seat = self._seats.get(participant_id)
        return None if seat is None else seat.state

    def participant_of(self, conn_id: str) -> str | None:
        conn = self._conns.get(conn_id)
        return None if conn is None else conn.participant_id

    # ---- events --------------------------------------------------------------------------------

    def open(self, conn_id: str, now: datetime) -> list[Effect]:
        if self._ended:
            return [
                Send(conn_id, error_message("room-ended", "this call has ended")),
                Close(conn_id, CloseCode.ENDED, "ended"),
            ]
        self._conns[conn_id] = _Conn(opened_at=now, tokens=float(self._policy.rate_burst), last=now)
        return []

    def receive(self, conn_id: str, raw: str | bytes, now: datetime) -> list[Effect]:
        conn = self._conns.get(conn_id)
        if conn is None:  # closed meanwhile (e.g. replaced): drop the frame
            return []
        try:
            self._take_token(conn, now)
            msg = parse_inbound(raw, self._policy.limits)
            return self._dispatch(conn_id, conn, msg, now)
        except MessageRefused as refused:
            return self._refuse(conn_id, conn, refused)

    def join_verified(self, conn_id: str, grant: JoinGrant, now: datetime, *, resume: bool) -> list[Effect]:
        conn = self._conns.get(conn_id)
        if conn is None or not conn.verifying:
            return []
        conn.verifying = False
        if self._ended:
            return [
                Send(conn_id, error_message("room-ended", "this call has ended")),
                Close(conn_id, CloseCode.ENDED, "ended"),
            ]
        if grant.room_id != self.room_id:  # the shell's bug; refuse rather than seat in the wrong room
            return self.join_refused(conn_id, "wrong_room", now)
        seat = self._seats.get(grant.participant_id)
        if seat is not None:
            return self._resume(conn_id, conn, seat, grant, now, resume=resume)
        if len(self._seats) >= MAX_PARTICIPANTS:
            del self._conns[conn_id]
            return [
                Send(conn_id, error_message("room-full", f"a call holds at most {MAX_PARTICIPANTS} participants")),
                Close(conn_id, CloseCode.REFUSED, "room-full"),
            ]
        conn.participant_id = grant.participant_id
        if grant.role == "clinician":
            seat = _Seat(grant, SeatState.IN_CALL, conn_id, in_call_since=now)
            self._seats[grant.participant_id] = seat
            out: list[Effect] = [self._joined(seat, now, resumed=False)]
            out += [Record(self._event(grant.participant_id, "joined", now, detail="in-call"))]
            out += self._announce_peer(seat, resumed=False)
            return out
        seat = _Seat(grant, SeatState.WAITING, conn_id)
        self._seats[grant.participant_id] = seat
        out = [self._joined(seat, now, resumed=False)]
        out.append(Record(self._event(grant.participant_id, "joined", now, detail="waiting")))
        out += self._waiting_room_update()
        return out

    def join_refused(self, conn_id: str, why: str, now: datetime) -> list[Effect]:
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return []
        return [
            Send(conn_id, error_message("join-refused", why)),
            Close(conn_id, CloseCode.REFUSED, "join-refused"),
        ]

    def closed(self, conn_id: str, now: datetime) -> list[Effect]:
        """The transport went away without a ``leave``: keep the seat for the reconnect grace."""
        conn = self._conns.pop(conn_id, None)
        if conn is None or conn.participant_id is None:
            return []
        seat = self._seats.get(conn.participant_id)
        if seat is None or seat.conn_id != conn_id:
            return []
        seat.conn_id = None
        seat.disconnected_at = now
        out: list[Effect] = [Record(self._event(seat.grant.participant_id, "disconnected", now))]
        if seat.state is SeatState.IN_CALL:
            note = {"type": "peer-reconnecting", "participant_id": seat.grant.participant_id}
            out += [Send(c, note) for c in self._in_call_conns(exclude=seat.grant.participant_id)]
        else:
            out += self._waiting_room_update()
        return out

    def evict(self, participant_id: str, now: datetime) -> list[Effect]:
        """Take a participant out now (they were removed from the room in the database)."""
        seat = self._seats.get(participant_id)
        if seat is None:
            return []
        out: list[Effect] = []
        if seat.conn_id is not None:
            conn_id, seat.conn_id = seat.conn_id, None
            self._conns.pop(conn_id, None)
            out += [Send(conn_id, error_message("removed", "you were removed from this call"))]
            out += [Close(conn_id, CloseCode.REFUSED, "removed")]
        end = seat.disconnected_at or now
        return self._vacate(seat, end, now, detail="removed") + out

    def tick(self, now: datetime) -> list[Effect]:
        """Seats whose reconnect grace has run out are vacated; connections that never joined are closed."""
        out: list[Effect] = []
        grace = timedelta(seconds=self._policy.reconnect_grace_s)
        for seat in list(self._seats.values()):
            if seat.conn_id is None and seat.disconnected_at is not None and now - seat.disconnected_at >= grace:
                out += self._vacate(seat, seat.disconnected_at, now, detail="timeout")
        timeout = timedelta(seconds=self._policy.join_timeout_s)
        for conn_id, conn in list(self._conns.items()):
            if conn.participant_id is None and not conn.verifying and now - conn.opened_at >= timeout:
                del self._conns[conn_id]
                out += [
                    Send(conn_id, error_message("join-timeout", "no join message in time")),
                    Close(conn_id, CloseCode.PROTOCOL, "join-timeout"),
                ]
        return out

    # ---- inbound messages ----------------------------------------------------------------------

    def _dispatch(self, conn_id: str, conn: _Conn, msg: Inbound, now: datetime) -> list[Effect]:
        if isinstance(msg, Ping):
            return [Send(conn_id, {"type": "pong"})]
        if isinstance(msg, Join):
            if conn.participant_id is not None or conn.verifying:
                raise MessageRefused("already-joined", "this connection has joined", ref=msg.ref)
            conn.verifying = True
            return [VerifyJoin(conn_id, msg.token, msg.resume)]
        if conn.participant_id is None:
            raise MessageRefused("not-joined", "send join first", ref=msg.ref)
        seat = self._seats[conn.participant_id]
        if isinstance(msg, Leave):
            del self._conns[conn_id]
            seat.conn_id = None
            return [*self._vacate(seat, now, now, detail="left"), Close(conn_id, CloseCode.LEFT, "left")]
        if seat.state is not SeatState.IN_CALL:
            raise MessageRefused("not-admitted", "waiting for a clinician to admit you", ref=msg.ref)
        if isinstance(msg, Offer | Answer | IceCandidate):
            return self._relay(seat, msg)
        if isinstance(msg, Chat):
            return self._chat(seat, msg, now)
        if isinstance(msg, Admit):
            return self._admit(seat, msg, now)
        if isinstance(msg, EndCall):
            return self._end(seat, msg, now)
        if isinstance(msg, RefreshIce):
            return [Send(conn_id, {"type": "ice-servers", "ice_servers": self._ice(seat.grant, now)})]
        raise MessageRefused("unknown-type", "unknown message type", ref=msg.ref)  # pragma: no cover

    def _relay(self, seat: _Seat, msg: Offer | Answer | IceCandidate) -> list[Effect]:
        target = self._seats.get(msg.to)
        if target is None or target is seat:
            raise MessageRefused("unknown-peer", "no such participant in this call", ref=msg.ref)
        if target.state is not SeatState.IN_CALL:
            raise MessageRefused("peer-not-admitted", "that participant is in the waiting room", ref=msg.ref)
        if target.conn_id is None:
            raise MessageRefused("peer-unavailable", "that participant is reconnecting", ref=msg.ref)
        sender = seat.grant.participant_id
        if isinstance(msg, IceCandidate):
            cand = None if msg.candidate is None else msg.candidate.model_dump()
            return [Send(target.conn_id, {"type": "ice-candidate", "from": sender, "candidate": cand})]
        return [Send(target.conn_id, {"type": msg.type, "from": sender, "sdp": msg.sdp})]

    def _chat(self, seat: _Seat, msg: Chat, now: datetime) -> list[Effect]:
        self._chat_seq += 1
        note = {
            "type": "chat",
            "chat_id": self._chat_seq,
            "from": seat.grant.participant_id,
            "text": msg.text,
            "at": now.isoformat(),
        }
        return [Send(c, note) for c in self._in_call_conns()]

    def _admit(self, seat: _Seat, msg: Admit, now: datetime) -> list[Effect]:
        if seat.grant.role != "clinician":
            raise MessageRefused("forbidden", "only a clinician admits participants", ref=msg.ref)
        target = self._seats.get(msg.participant_id)
        if target is None:
            raise MessageRefused("unknown-peer", "no such participant in the waiting room", ref=msg.ref)
        if target.state is not SeatState.WAITING:
            raise MessageRefused("already-admitted", "that participant is in the call", ref=msg.ref)
        if target.conn_id is None:
            raise MessageRefused("peer-unavailable", "that participant is reconnecting", ref=msg.ref)
        target.state = SeatState.IN_CALL
        target.in_call_since = now
        pid = target.grant.participant_id
        peers = [s.peer_info() for s in self._seats.values() if s is not target and s.state is SeatState.IN_CALL]
        out: list[Effect] = [
            Send(
                target.conn_id,
                {"type": "admitted", "peers": peers, "ice_servers": self._ice(target.grant, now)},
            ),
            Record(self._event(pid, "admitted", now, detail=seat.grant.participant_id)),
        ]
        out += self._announce_peer(target, resumed=False)
        out += self._waiting_room_update()
        return out

    def _end(self, seat: _Seat, msg: EndCall, now: datetime) -> list[Effect]:
        if seat.grant.role != "clinician":
            raise MessageRefused("forbidden", "only a clinician ends the call", ref=msg.ref)
        self._ended = True
        by = seat.grant.participant_id
        out: list[Effect] = []
        for other in list(self._seats.values()):
            end = other.disconnected_at if other.conn_id is None and other.disconnected_at else now
            out.append(
                Record(self._event(other.grant.participant_id, "left", now, detail="ended", in_call=other, end=end))
            )
        out.append(Record(self._event(by, "ended", now)))
        for conn_id in list(self._conns):
            out.append(Send(conn_id, {"type": "ended", "by": by}))
            out.append(Close(conn_id, CloseCode.ENDED, "ended"))
        self._seats.clear()
        self._conns.clear()
        return out

    # ---- helpers -------------------------------------------------------------------------------

    def _resume(
        self, conn_id: str, conn: _Conn, seat: _Seat, grant: JoinGrant, now: datetime, *, resume: bool
    ) -> list[Effect]:
        out: list[Effect] = []
        if seat.conn_id is not None and seat.conn_id != conn_id:
            old = seat.conn_id
            self._conns.pop(old, None)
            out += [
                Send(old, error_message("replaced", "this participant connected again elsewhere")),
                Close(old, CloseCode.REPLACED, "replaced"),
            ]
        conn.participant_id = grant.participant_id
        seat.grant = grant
        seat.conn_id = conn_id
        seat.disconnected_at = None
        out.append(self._joined(seat, now, resumed=True))
        out.append(Record(self._event(grant.participant_id, "resumed", now, detail=seat.state.value)))
        if seat.state is SeatState.IN_CALL:
            if resume:
                note = {"type": "peer-reconnected", "participant_id": grant.participant_id}
                out += [Send(c, note) for c in self._in_call_conns(exclude=grant.participant_id)]
            else:
                out += self._announce_peer(seat, resumed=True)
        else:
            out += self._waiting_room_update()
        return out

    def _vacate(self, seat: _Seat, end: datetime, now: datetime, *, detail: str) -> list[Effect]:
        pid = seat.grant.participant_id
        del self._seats[pid]
        out: list[Effect] = [Record(self._event(pid, "left", now, detail=detail, in_call=seat, end=end))]
        if seat.state is SeatState.IN_CALL:
            note = {"type": "peer-left", "participant_id": pid, "reason": detail}
            out += [Send(c, note) for c in self._in_call_conns()]
        else:
            out += self._waiting_room_update()
        return out

    def _joined(self, seat: _Seat, now: datetime, *, resumed: bool) -> Send:
        assert seat.conn_id is not None  # noqa: S101 - called only for a connected seat
        msg: dict[str, Any] = {
            "type": "joined",
            "v": PROTOCOL_VERSION,
            "room_id": self.room_id,
            "participant_id": seat.grant.participant_id,
            "role": seat.grant.role,
            "state": seat.state.value,
            "resumed": resumed,
            "reconnect_grace_s": self._policy.reconnect_grace_s,
        }
        if seat.state is SeatState.IN_CALL:
            msg["peers"] = [
                s.peer_info() for s in self._seats.values() if s is not seat and s.state is SeatState.IN_CALL
            ]
            msg["ice_servers"] = self._ice(seat.grant, now)
            if seat.grant.role == "clinician":
                msg["waiting"] = self._waiting_list()
        return Send(seat.conn_id, msg)

    def _announce_peer(self, seat: _Seat, *, resumed: bool) -> list[Effect]:
        """Tell the in-call participants that ``seat`` entered the call: each sends it an offer."""
        note = {"type": "peer-joined", "peer": seat.peer_info(), "resumed": resumed}
        return [Send(c, note) for c in self._in_call_conns(exclude=seat.grant.participant_id)]

    def _waiting_list(self) -> list[dict[str, Any]]:
        return [
            {**s.peer_info(), "connected": s.conn_id is not None}
            for s in self._seats.values()
            if s.state is SeatState.WAITING
        ]

    def _waiting_room_update(self) -> list[Effect]:
        note = {"type": "waiting-room", "waiting": self._waiting_list()}
        return [
            Send(s.conn_id, note)
            for s in self._seats.values()
            if s.state is SeatState.IN_CALL and s.grant.role == "clinician" and s.conn_id is not None
        ]

    def _in_call_conns(self, *, exclude: str | None = None) -> list[str]:
        return [
            s.conn_id
            for pid, s in self._seats.items()
            if s.state is SeatState.IN_CALL and s.conn_id is not None and pid != exclude
        ]

    def _event(
        self,
        participant_id: str,
        kind: str,
        at: datetime,
        *,
        detail: str = "",
        in_call: _Seat | None = None,
        end: datetime | None = None,
    ) -> NewCallEvent:
        seconds: float | None = None
        if kind == "left":
            since = in_call.in_call_since if in_call is not None else None
            stop = end or at
            seconds = max(0.0, (stop - since).total_seconds()) if since is not None else 0.0
        return NewCallEvent(self.room_id, participant_id, kind, at, seconds, detail)

    def _take_token(self, conn: _Conn, now: datetime) -> None:
        elapsed = max(0.0, (now - conn.last).total_seconds())
        conn.last = now
        conn.tokens = min(float(self._policy.rate_burst), conn.tokens + elapsed * self._policy.rate_per_s)
        if conn.tokens < 1.0:
            raise MessageRefused("rate-limited", "too many messages")
        conn.tokens -= 1.0

    def _refuse(self, conn_id: str, conn: _Conn, refused: MessageRefused) -> list[Effect]:
        conn.errors += 1
        out: list[Effect] = [Send(conn_id, error_message(refused.code, refused.detail, refused.ref))]
        if conn.errors >= self._policy.max_errors:
            out += self._drop(conn_id, CloseCode.RATE if refused.code == "rate-limited" else CloseCode.PROTOCOL)
        return out

    def _drop(self, conn_id: str, code: CloseCode) -> list[Effect]:
        """Close a misbehaving connection; its seat keeps the reconnect grace like any dropped one."""
        out = self.closed(conn_id, self._conns[conn_id].last)
        self._conns.pop(conn_id, None)
        return [*out, Close(conn_id, code, "too-many-errors")]

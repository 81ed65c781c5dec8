"""The signalling protocol, version 1: inbound message schemas, limits, and outbound messages.

Every frame is one JSON object with a ``type``. Inbound frames are checked, in this order: size
(``video_max_message_bytes``), JSON, an object, a known ``type``, the type's schema (strict: no
coercion, no extra fields), then per-field limits (SDP bytes, chat characters). Anything that fails
raises :class:`~consult.errors.MessageRefused` with a stable code; the caller answers it with an
``error`` message. docs/video.md lists every message.

Inbound types: ``join``, ``admit``, ``offer``, ``answer``, ``ice-candidate``, ``chat``, ``leave``,
``end-call``, ``refresh-ice``, ``ping``. Outbound types: ``joined``, ``admitted``, ``waiting-room``,
``peer-joined``, ``peer-reconnecting``, ``peer-reconnected``, ``peer-left``, ``offer``, ``answer``,
``ice-candidate``, ``chat``, ``ice-servers``, ``ended``, ``pong``, ``error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from consult.errors import MessageRefused

__all__ = [
    "PROTOCOL_VERSION",
    "Admit",
    "Answer",
    "Chat",
    "EndCall",
    "IceCandidate",
    "IceCandidateInit",
    "Inbound",
    "Join",
    "Leave",
    "Limits",
    "Offer",
    "Ping",
    "RefreshIce",
    "error_message",
    "parse_inbound",
]

PROTOCOL_VERSION: Final = 1
INBOUND_TYPES: Final = (
    "join",
    "admit",
    "offer",
    "answer",
    "ice-candidate",
    "chat",
    "leave",
    "end-call",
    "refresh-ice",
    "ping",
)

PeerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Ref = Annotated[str, Field(max_length=64)]


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 64 * 1024
    max_sdp_bytes: int = 32 * 1024
    max_chat_chars: int = 2000


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # The client's id for this message, echoed in an error about it.
    ref: Ref | None = None


class Join(_Inbound):
    type: Literal["join"]
    v: Literal[1]
    token: Annotated[str, Field(min_length=1, max_length=512)]
    # True when the client's peer connections survived (only the signalling connection dropped):
    # peers are told "peer-reconnected" and keep their connections instead of renegotiating.
    resume: bool = False


class Admit(_Inbound):
    type: Literal["admit"]
    participant_id: PeerId


class Offer(_Inbound):
    type: Literal["offer"]
    to: PeerId
    sdp: str


class Answer(_Inbound):
    type: Literal["answer"]
    to: PeerId
    sdp: str


class IceCandidateInit(BaseModel):
    """RTCIceCandidateInit as the browser serialises it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=255)] | None = None
    usernameFragment: Annotated[str, Field(max_length=256)] | None = None


class IceCandidate(_Inbound):
    type: Literal["ice-candidate"]
    to: PeerId
    # None: end of candidates.
    candidate: IceCandidateInit | None


class Chat(_Inbound):
    type: Literal["chat"]
    text: Annotated[str, Field(min_length=1)]


class Leave(_Inbound):
    type: Literal["leave"]


class EndCall(_Inbound):
    type: Literal["end-call"]


class RefreshIce(_Inbound):
    type: Literal["refresh-ice"]


class Ping(_Inbound):
    type: Literal["ping"]


Inbound = Join | Admit | Offer | Answer | IceCandidate | Chat | Leave | EndCall | RefreshIce | Ping
_ADAPTER: Final[TypeAdapter[Inbound]] = TypeAdapter(Annotated[Inbound, Field(discriminator="type")])


def _ref_of(obj: dict[str, Any]) -> str | None:
    ref = obj.get("ref")
    return ref if isinstance(ref, str) and len(ref) <= 64 else None


def parse_inbound(raw: str | bytes, limits: Limits) -> Inbound:
    """One validated inbound message, or :class:`MessageRefused`."""
    if len(raw) > limits.max_message_bytes or (
        isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > limits.max_message_bytes
    ):
        raise MessageRefused("too-large", f"messages are at most {limits.max_message_bytes} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise MessageRefused("invalid-json", "not a JSON text") from None
    if not isinstance(obj, dict):
        raise MessageRefused("invalid-message", "a message is a JSON object")
    ref = _ref_of(obj)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in INBOUND_TYPES:
        raise MessageRefused("unknown-type", "unknown message type", ref=ref)
    try:
        msg = _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        # Field paths only: never the input values (they may be an SDP or a chat text).
        fields = ",".join(".".join(str(p) for p in e["loc"][1:]) or "message" for e in exc.errors()[:5])
        raise MessageRefused("invalid-message", f"invalid fields: {fields}"[:200], ref=ref) from None
    _check_limits(msg, limits)
    return msg


def _check_limits(msg: Inbound, limits: Limits) -> None:
    if isinstance(msg, Offer | Answer):
        size = len(msg.sdp.encode("utf-8", "surrogatepass"))
        if size > limits.max_sdp_bytes:
            raise MessageRefused("too-large", f"an SDP is at most {limits.max_sdp_bytes} bytes", ref=msg.ref)
        if not msg.sdp.startswith("v=0"):
            raise MessageRefused("invalid-message", "an SDP starts with v=0", ref=msg.ref)
    elif isinstance(msg, Chat) and len(msg.text) > limits.max_chat_chars:
        raise MessageRefused("too-large", f"a chat message is at most {limits.max_chat_chars} characters", ref=msg.ref)


def error_message(code: str, detail: str, ref: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": detail}
    if ref is not None:
        out["ref"] = ref
    return out

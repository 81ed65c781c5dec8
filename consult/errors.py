"""The exception tree of the consult package.

::

    VigilError
    └── ConsultError                  .reason
        ├── ConsultRequestNotFound    .request_id
        ├── ConsultStateError         .request_id .status .wanted   the request is not in a state that allows it
        ├── SlotUnavailable           .slot_id .why   ('not_open', 'request_booked', 'not_found')
        ├── SlotOverlap               .clinician_user_id
        ├── RoomError                 .room_id .why   ('not_found', 'ended', 'room_full', 'duplicate_user',
        │                                              'second_patient', 'participant_not_found')
        ├── VideoConfigError          .field   video settings that cannot be used (missing or weak secret)
        ├── JoinRefused               .why .room_id .participant_id   a join link that must not join
        └── MessageRefused            .code .ref   an inbound signalling message that is refused

The care-team communication work (messages, notifications) extends this tree. ``JoinRefused.why``
is a stable code (``malformed``, ``bad_signature``, ``unknown_key``, ``expired``, ``wrong_room``,
``room_closed``, ``unknown_participant``, ``removed``, ``revoked``) recorded for every refusal.
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = [
    "ConsultError",
    "ConsultRequestNotFound",
    "ConsultStateError",
    "JoinRefused",
    "MessageRefused",
    "RoomError",
    "SlotOverlap",
    "SlotUnavailable",
    "VideoConfigError",
]


class ConsultError(VigilError):
    reason = "consult"


class ConsultRequestNotFound(ConsultError):
    reason = "consult_request_not_found"

    def __init__(self, request_id: int) -> None:
        super().__init__(f"no consult request {request_id}")
        self.request_id = request_id


class ConsultStateError(ConsultError):
    reason = "consult_state"

    def __init__(self, request_id: int, status: str, wanted: str) -> None:
        super().__init__(f"consult request {request_id} is {status}: cannot {wanted}")
        self.request_id = request_id
        self.status = status
        self.wanted = wanted


class SlotUnavailable(ConsultError):
    reason = "slot_unavailable"

    def __init__(self, slot_id: int, why: str) -> None:
        super().__init__(f"slot {slot_id} cannot be booked: {why}")
        self.slot_id = slot_id
        self.why = why


class SlotOverlap(ConsultError):
    reason = "slot_overlap"

    def __init__(self, clinician_user_id: str) -> None:
        super().__init__("the slot overlaps another slot of the same clinician")
        self.clinician_user_id = clinician_user_id


class RoomError(ConsultError):
    reason = "room"

    def __init__(self, room_id: str, why: str) -> None:
        super().__init__(f"room {room_id}: {why}")
        self.room_id = room_id
        self.why = why


class VideoConfigError(ConsultError):
    reason = "video_config"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"video setting {field}: {problem}")
        self.field = field


class JoinRefused(ConsultError):
    reason = "join_refused"

    def __init__(self, why: str, *, room_id: str = "", participant_id: str | None = None) -> None:
        super().__init__(f"join refused: {why}")
        # A stable code; the class attribute `reason` stays "join_refused" for metrics by class.
        self.why = why
        self.room_id = room_id
        self.participant_id = participant_id


class MessageRefused(ConsultError):
    """A signalling message that is answered with an ``error`` message (never an exception escaping)."""

    reason = "message_refused"

    def __init__(self, code: str, detail: str, *, ref: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        # Stable kebab-case code sent to the client (docs/video.md lists them); detail names no PHI.
        self.code = code
        self.detail = detail
        self.ref = ref

"""The demo opens the video consult the escalation requested and prints its join links.

What a clinician does with "Start now" on the consult's page: the room opens with the demo clinician
and the patient seated, and each gets a signed join link (docs/video.md), minted with the same key
the API verifies them with (``video_link_secret``, else the API's secret key in ``key_dir``). A
resumed demo reuses the room of a consult already open.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from consult import scheduling
from consult.notify.settings import NotifySettings, api_secret
from consult.video.links import JoinLinkSigner, join_url
from consult.video.rooms import mint_link
from consult.video.settings import VideoSettings
from rpm_core.settings import load_settings
from store import users
from store.connection import connect
from store.consults import consult_requests

__all__ = ["ConsultLinks", "ensure_patient_contact", "open_consult"]


@dataclass(frozen=True, slots=True)
class ConsultLinks:
    request_id: int
    patient_id: str
    clinician_link: str
    patient_link: str
    consult_page: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_patient_contact(url: str, *, org_id: str, patient_id: str, email: str, name: str) -> bool:
    """Give the patient an account that receives email (no password: it cannot sign in), unless they
    have one, so the escalation's message to the patient reaches the demo's mailbox and the
    patient's video seat is theirs. True when one was created."""
    with connect(url, application_name="vigil-demo") as conn:
        if users.patient_user_id(conn, org_id, patient_id) is not None or users.get_user_by_email(conn, email):
            return False
        now = datetime.now(UTC)
        users.create_user(
            conn, org_id=org_id, email=email, display_name=name, role="patient", now=now, patient_id=patient_id
        )
    return True


def open_consult(
    url: str, config: Path, *, org_id: str, patient_id: str, clinician_email: str, public_url: str
) -> ConsultLinks | None:
    """Open the patient's pending consult (requested, scheduled or in progress); None if there is none."""
    notify = load_settings(NotifySettings, config_file=config)
    video = load_settings(VideoSettings, config_file=config)
    signer = JoinLinkSigner.from_settings(video, fallback=SecretStr(api_secret(notify)))
    now = datetime.now(UTC)
    with connect(url, application_name="vigil-demo") as conn:
        pending = [
            r
            for r in consult_requests(conn, org_id=org_id, patient_id=patient_id, limit=20)
            if r.status in ("requested", "scheduled", "in_progress")
        ]
        clinician = users.get_user_by_email(conn, clinician_email)
        if not pending or clinician is None:
            return None
        request = pending[0]
        booking = scheduling.start_now(
            conn,
            org_id=org_id,
            request_id=request.request_id,
            clinician_user_id=clinician.user_id,
            patient_user_id=users.patient_user_id(conn, org_id, patient_id),
            at=now,
        )
        room = booking.room
        base = public_url.rstrip("/")
        return ConsultLinks(
            request_id=request.request_id,
            patient_id=patient_id,
            clinician_link=join_url(base, room.room_id, mint_link(signer, video, room, booking.clinician, now)),
            patient_link=join_url(base, room.room_id, mint_link(signer, video, room, booking.patient, now)),
            consult_page=f"{base}/consults/{request.request_id}",
        )

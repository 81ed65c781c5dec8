"""Fixtures of the consult tests: an organisation with a patient, video settings with generated
secrets, and helpers that open a consult's room the way the app will."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from consult import scheduling
from consult.requests import request_video_consult
from consult.video.links import JoinLinkSigner
from consult.video.rooms import mint_link
from consult.video.settings import VideoSettings
from store.consult_rooms import ParticipantRow, RoomRow

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ORG = "o1"
PATIENT = "patient-1"


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO organizations VALUES (%s, 'Clinic')", (ORG,))
        for pid in (PATIENT, "patient-2", "patient-3"):
            c.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES (%s, %s, 'Patient')", (pid, ORG))
        yield c


def make_settings(**overrides: object) -> VideoSettings:
    values: dict[str, object] = {"video_link_secret": secrets.token_urlsafe(48)}
    values.update(overrides)
    return VideoSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> VideoSettings:
    return make_settings()


@pytest.fixture
def signer(settings: VideoSettings) -> JoinLinkSigner:
    return JoinLinkSigner.from_settings(settings)


@dataclass
class Consult:
    room: RoomRow
    patient: ParticipantRow
    clinician: ParticipantRow
    request_id: int


def open_consult(
    conn: psycopg.Connection, *, patient_id: str = PATIENT, clinician: str = "dr-a", at: datetime = T0
) -> Consult:
    """A consult request started now by ``clinician``: its room with the patient and the clinician."""
    with conn.transaction():
        request = request_video_consult(
            conn, org_id=ORG, patient_id=patient_id, alert_id=None, at=at, requested_by=clinician
        )
    booking = scheduling.start_now(
        conn, org_id=ORG, request_id=request.request_id, clinician_user_id=clinician, patient_user_id=None, at=at
    )
    return Consult(booking.room, booking.patient, booking.clinician, request.request_id)


def link(signer: JoinLinkSigner, settings: VideoSettings, consult: Consult, who: ParticipantRow, now: datetime) -> str:
    return mint_link(signer, settings, consult.room, who, now)


def later(seconds: float, base: datetime = T0) -> datetime:
    return base + timedelta(seconds=seconds)

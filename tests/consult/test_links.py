"""Join links attacked: tampered, expired, for another room, swapped participant, another secret,
revoked and replayed after removal (the database check), and arbitrary input."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consult.errors import JoinRefused, VideoConfigError
from consult.video import rooms
from consult.video.links import JoinLinkSigner, join_url
from consult.video.settings import VideoSettings
from tests.consult.conftest import T0, link, make_settings, open_consult

ROOM = "R" * 22
OTHER_ROOM = "S" * 22
PID = "participant-1"
SECRET = b"k" * 16 + b"0123456789abcdef"  # 32 bytes, 17 distinct values


def _signer(secret: bytes = SECRET, previous: tuple[bytes, ...] = ()) -> JoinLinkSigner:
    return JoinLinkSigner(secret, previous=previous)


def _token(signer: JoinLinkSigner, room: str = ROOM, pid: str = PID, hours: float = 1) -> str:
    return signer.mint(room_id=room, participant_id=pid, generation=1, expires_at=T0 + timedelta(hours=hours))


def _refusal(signer: JoinLinkSigner, token: object, room: str = ROOM, now=T0) -> str:
    with pytest.raises(JoinRefused) as exc:
        signer.verify(token, room_id=room, now=now)
    return exc.value.why


def test_a_genuine_link_verifies_to_its_room_participant_and_generation() -> None:
    claims = _signer().verify(_token(_signer()), room_id=ROOM, now=T0)
    assert (claims.room_id, claims.participant_id, claims.generation) == (ROOM, PID, 1)
    assert claims.expires_at == T0 + timedelta(hours=1)


def test_every_single_character_change_is_refused() -> None:
    signer = _signer()
    token = _token(signer)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for i in range(len(token)):
        replacement = alphabet[(alphabet.index(token[i]) + 1) % len(alphabet)] if token[i] in alphabet else "A"
        tampered = token[:i] + replacement + token[i + 1 :]
        if tampered == token:
            continue
        why = _refusal(signer, tampered)
        assert why in ("malformed", "bad_signature", "unknown_key"), (i, why)


def test_a_payload_rewritten_to_another_participant_or_room_is_refused() -> None:
    """Swapping the patient's id for the clinician's (or the room) without the key breaks the tag."""
    signer = _signer()
    prefix, payload, tag = _token(signer).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for field, value in (("p", "clinician-1"), ("r", OTHER_ROOM), ("g", 2), ("e", body["e"] + 86400)):
        forged = dict(body, **{field: value})
        forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        assert _refusal(signer, f"{prefix}.{forged_payload}.{tag}", room=forged.get("r", ROOM)) == "bad_signature"


def test_expired_links_are_refused_from_the_expiry_second_on() -> None:
    signer = _signer()
    token = _token(signer, hours=1)
    signer.verify(token, room_id=ROOM, now=T0 + timedelta(minutes=59, seconds=59))
    assert _refusal(signer, token, now=T0 + timedelta(hours=1)) == "expired"


def test_a_link_for_room_a_cannot_join_room_b() -> None:
    signer = _signer()
    assert _refusal(signer, _token(signer, room=ROOM), room=OTHER_ROOM) == "wrong_room"


def test_a_link_signed_with_another_secret_is_refused_and_rotation_keeps_old_links() -> None:
    old, new = SECRET, b"n" * 16 + b"fedcba9876543210"
    old_token = _token(_signer(old))
    assert _refusal(_signer(new), old_token) == "unknown_key"
    rotated = _signer(new, previous=(old,))
    assert rotated.verify(old_token, room_id=ROOM, now=T0).participant_id == PID
    assert (
        rotated.verify(_token(rotated), room_id=ROOM, now=T0).kid != rotated.verify(old_token, room_id=ROOM, now=T0).kid
    )


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=600), st.binary(max_size=100), st.integers(), st.none(), st.lists(st.text())))
def test_arbitrary_input_is_refused_with_a_reason_and_nothing_else(token) -> None:
    with pytest.raises(JoinRefused) as exc:
        _signer().verify(token, room_id=ROOM, now=T0)
    assert exc.value.why in ("malformed", "bad_signature", "unknown_key")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=400))
def test_arbitrary_well_shaped_tokens_are_refused(body: str) -> None:
    with pytest.raises(JoinRefused):
        _signer().verify("v1." + body, room_id=ROOM, now=T0)


def test_weak_or_missing_secrets_are_refused_at_start() -> None:
    for bad in (None, "short", "changeme-changeme-changeme-changeme-1", "a" * 64):
        with pytest.raises(VideoConfigError):
            JoinLinkSigner.from_settings(VideoSettings(video_link_secret=bad))


def test_the_link_puts_the_token_in_the_fragment() -> None:
    url = join_url("https://vigil.example/", ROOM, "v1.abc.def")
    assert url == f"https://vigil.example/consult/rooms/{ROOM}/join#t=v1.abc.def"


# ---- the database half: revocation --------------------------------------------------------------


def test_a_removed_participant_s_link_is_refused_and_a_reissued_link_revokes_the_old_one(conn) -> None:
    s = make_settings()
    signer = JoinLinkSigner.from_settings(s)
    consult = open_consult(conn)
    patient_link = link(signer, s, consult, consult.patient, T0)
    grant = rooms.grant_for(conn, signer.verify(patient_link, room_id=consult.room.room_id, now=T0))
    assert (grant.participant_id, grant.role) == (consult.patient.participant_id, "patient")

    fresh = rooms.reissue_link(conn, signer, s, consult.patient.participant_id, T0)
    with pytest.raises(JoinRefused) as revoked:
        rooms.grant_for(conn, signer.verify(patient_link, room_id=consult.room.room_id, now=T0))
    assert revoked.value.why == "revoked"
    assert rooms.grant_for(conn, signer.verify(fresh, room_id=consult.room.room_id, now=T0)).role == "patient"

    rooms.remove(conn, consult.patient.participant_id, removed_by="dr-a", at=T0)
    with pytest.raises(JoinRefused) as removed:
        rooms.grant_for(conn, signer.verify(fresh, room_id=consult.room.room_id, now=T0))
    assert removed.value.why == "removed"


def test_a_link_of_an_ended_room_or_an_unknown_participant_is_refused(conn) -> None:
    s = make_settings()
    signer = JoinLinkSigner.from_settings(s)
    consult = open_consult(conn)
    ghost = signer.mint(
        room_id=consult.room.room_id,
        participant_id="ghost-participant",
        generation=1,
        expires_at=T0 + timedelta(hours=1),
    )
    with pytest.raises(JoinRefused) as unknown:
        rooms.grant_for(conn, signer.verify(ghost, room_id=consult.room.room_id, now=T0))
    assert unknown.value.why == "unknown_participant"

    # A participant of room B presenting a link (genuinely signed) that names room A.
    other = open_consult(conn, patient_id="patient-2")
    crossed = signer.mint(
        room_id=consult.room.room_id,
        participant_id=other.patient.participant_id,
        generation=1,
        expires_at=T0 + timedelta(hours=1),
    )
    with pytest.raises(JoinRefused) as wrong:
        rooms.grant_for(conn, signer.verify(crossed, room_id=consult.room.room_id, now=T0))
    assert wrong.value.why == "wrong_room"

    from store.consult_rooms import end_room

    end_room(conn, consult.room.room_id, ended_by="dr-a", at=T0)
    good = link(signer, s, consult, consult.clinician, T0)
    with pytest.raises(JoinRefused) as closed:
        rooms.grant_for(conn, signer.verify(good, room_id=consult.room.room_id, now=T0))
    assert closed.value.why == "room_closed"


def test_scheduled_links_last_until_after_the_end_and_others_for_the_ttl(conn) -> None:
    s = make_settings(video_link_ttl_s=3600, video_link_after_end_s=1800)
    consult = open_consult(conn)
    assert rooms.link_expiry(s, consult.room, T0) == T0 + timedelta(hours=1)
    scheduled = dataclasses.replace(consult.room, scheduled_end=T0 + timedelta(days=2))
    assert rooms.link_expiry(s, scheduled, T0) == T0 + timedelta(days=2, minutes=30)

"""The pure parts: acknowledgement-link tokens, quiet hours across time zones and midnight, what
each template says (and does not), and the backoff schedule the worker uses."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consult.notify.errors import AckLinkInvalid, UnknownTemplate
from consult.notify.links import AckClaim, AckLinkSigner, ack_path
from consult.notify.policy import quiet_until
from consult.notify.templates import KINDS, Links, patient_message_text, render

SIGNER = AckLinkSigner.from_secret("a-test-secret-" + "z" * 32)
CLAIM = AckClaim(
    "6f1c2a1e-8c55-4b8e-9d7e-0f8a1b2c3d4e",
    4242,
    "0c750b1e-d57f-418a-8cad-675821c46065",
    datetime(2026, 3, 2, tzinfo=UTC),
)


def test_a_token_round_trips_and_expires() -> None:
    token = SIGNER.token(CLAIM)
    assert len(token) < 100  # fits an SMS with the rest of the link
    assert SIGNER.verify(token) == CLAIM
    assert not CLAIM.expired(CLAIM.expires_at - timedelta(seconds=1))
    assert CLAIM.expired(CLAIM.expires_at)
    assert ack_path(4242, token) == f"/ack/4242/{token}"


@given(st.integers(min_value=0, max_value=64), st.integers(min_value=0, max_value=255))
def test_any_altered_byte_is_refused(position: int, flip: int) -> None:
    raw = bytearray(base64.urlsafe_b64decode(SIGNER.token(CLAIM) + "=="))
    raw[position % len(raw)] ^= flip or 1
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(AckLinkInvalid):
        SIGNER.verify(altered)


@pytest.mark.parametrize(
    "token", ["", "x" * 300, "é" * 10, "!!!!", SIGNER.token(CLAIM)[:-3], SIGNER.token(CLAIM) + "AA"]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(AckLinkInvalid) as exc:
        SIGNER.verify(token)
    assert exc.value.why in ("malformed", "signature")


def test_another_key_does_not_verify() -> None:
    with pytest.raises(AckLinkInvalid) as exc:
        AckLinkSigner.from_secret("another-secret-" + "z" * 32).verify(SIGNER.token(CLAIM))
    assert exc.value.why == "signature"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 1, 15, 3, 30, tzinfo=UTC), datetime(2026, 1, 15, 7, tzinfo=UTC)),
        (datetime(2026, 1, 15, 21, 59, tzinfo=UTC), None),
        (datetime(2026, 1, 15, 22, 0, tzinfo=UTC), datetime(2026, 1, 16, 7, tzinfo=UTC)),
        (datetime(2026, 1, 15, 7, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_span_midnight(now: datetime, expected: datetime | None) -> None:
    assert quiet_until(time(22), time(7), "UTC", now) == expected


def test_quiet_hours_follow_the_users_zone_and_its_dst() -> None:
    # Berlin is UTC+1 in winter, UTC+2 in summer: 07:00 local is 06:00 or 05:00 UTC.
    assert quiet_until(time(22), time(7), "Europe/Berlin", datetime(2026, 1, 15, 5, tzinfo=UTC)) == datetime(
        2026, 1, 15, 6, tzinfo=UTC
    )
    assert quiet_until(time(22), time(7), "Europe/Berlin", datetime(2026, 7, 15, 4, tzinfo=UTC)) == datetime(
        2026, 7, 15, 5, tzinfo=UTC
    )
    assert quiet_until(time(12), time(13), "Asia/Tokyo", datetime(2026, 7, 15, 3, 30, tzinfo=UTC)) == datetime(
        2026, 7, 15, 4, tzinfo=UTC
    )
    assert quiet_until(None, None, "UTC", datetime(2026, 7, 15, 3, tzinfo=UTC)) is None
    # An unknown zone is taken as UTC rather than failing the notification.
    assert quiet_until(time(1), time(2), "Mars/Olympus", datetime(2026, 7, 15, 1, tzinfo=UTC)) == datetime(
        2026, 7, 15, 2, tzinfo=UTC
    )


LINKS = Links("https://vigil.test", "https://vigil.test/ack/7/TOKEN", datetime(2026, 3, 2, 8, tzinfo=UTC))


@pytest.mark.parametrize("channel", ["email", "sms", "push", "in_app"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_renders_on_every_channel_without_phi(kind: str, channel: str) -> None:
    params = {
        "alert_id": 7,
        "grant_id": "g",
        "metrics": "spo2",
        "expires_at": "2026-03-01T09:00:00+00:00",
        "thread_id": "0b6f3c1e-2d4a-4f5e-9a7b-1c2d3e4f5a6b",
    }
    r = render(kind, channel, params, {"link": "https://vigil.test/reset-password#token=T"}, LINKS)
    assert r.subject.startswith("Vigil: ")
    text = r.subject + r.text
    if not (kind == "patient_message" and channel == "in_app"):
        assert "oxygen" not in text
    for word in ("spo2", "SpO2", "patient"):
        assert word not in text


def test_the_default_alert_text() -> None:
    r = render("alert_care_team", "email", {"alert_id": 7}, None, LINKS)
    assert r.subject == "Vigil: a new alert needs your attention"
    assert "https://vigil.test/alerts/7" in r.text
    assert "https://vigil.test/ack/7/TOKEN" in r.text
    assert "until 2026-03-02 08:00 UTC" in r.text
    assert render("alert_care_team", "email", {"alert_id": 7}, None, LINKS, urgent=True).subject == (
        "Vigil: an urgent alert needs your attention"
    )


def test_the_patient_message_text_only_where_the_policy_allows() -> None:
    params = {"metrics": "bp_systolic,bp_diastolic,spo2"}
    assert patient_message_text(params) == (
        "Your care team asks you to measure your blood pressure and oxygen level again now, the way you usually do."
    )
    assert "blood pressure" in render("patient_message", "in_app", params, None, LINKS).text
    assert "blood pressure" not in render("patient_message", "email", params, None, LINKS).text
    assert "blood pressure" in render("patient_message", "email", params, None, LINKS, text_channels=("email",)).text


def test_unknown_kinds_and_versions_are_refused() -> None:
    with pytest.raises(UnknownTemplate):
        render("something_else", "email", {}, None, LINKS)
    with pytest.raises(UnknownTemplate):
        render("alert_care_team", "email", {"alert_id": 1}, None, LINKS, template_version=2)
    with pytest.raises(UnknownTemplate):
        render("password_reset", "email", {}, None, LINKS)  # without its link

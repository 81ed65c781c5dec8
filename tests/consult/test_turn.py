"""TURN REST credentials: the coturn convention, computed independently here, and their lifetimes.
(tests/consult/test_media.py proves a real coturn accepts them and refuses expired ones.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from consult.errors import VideoConfigError
from consult.video.settings import VideoSettings
from consult.video.turn import ice_servers, turn_credential, turn_expiry
from tests.consult.conftest import T0, make_settings

SECRET = "s3cr3t-0123456789-abcdefghijklmnopqrstuvwxyz"


def test_username_is_expiry_colon_participant_and_password_is_base64_hmac_sha1() -> None:
    cred = turn_credential(SECRET.encode(), "participant-1", datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    assert cred.username == "1796637600:participant-1"
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"1796637600:participant-1", hashlib.sha1).digest())
    assert cred.credential == expected.decode()
    with pytest.raises(ValueError, match="':'"):
        turn_credential(SECRET.encode(), "a:b", T0)


def test_credentials_last_the_ttl_or_until_after_the_scheduled_end() -> None:
    s = make_settings(video_turn_ttl_s=3600, video_turn_after_end_s=600)
    assert turn_expiry(s, now=T0, scheduled_end=None) == T0 + timedelta(hours=1)
    assert turn_expiry(s, now=T0, scheduled_end=T0 + timedelta(minutes=20)) == T0 + timedelta(hours=1)
    assert turn_expiry(s, now=T0, scheduled_end=T0 + timedelta(hours=2)) == T0 + timedelta(hours=2, minutes=10)


def test_ice_servers_from_settings_with_per_participant_credentials() -> None:
    s = make_settings(
        video_stun_urls=("stun:turn.example.org:3478",),
        video_turn_urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"),
        video_turn_secret=SECRET,
    )
    stun, relay = ice_servers(s, participant_id="p-000001", now=T0)
    assert stun.as_json() == {"urls": ["stun:turn.example.org:3478"]}
    body = relay.as_json()
    assert body["urls"] == list(s.video_turn_urls)
    assert body["username"].endswith(":p-000001")
    assert ice_servers(make_settings(), participant_id="p-000001", now=T0) == []


def test_turn_without_a_usable_secret_or_with_a_foreign_url_is_refused() -> None:
    with pytest.raises(VideoConfigError):
        ice_servers(make_settings(video_turn_urls=("turn:x:3478",)), participant_id="p-000001", now=T0)
    with pytest.raises(ValueError, match="stun:"):
        VideoSettings(video_turn_urls=("http://x",))

"""ICE servers and TURN REST credentials for coturn (``use-auth-secret``).

coturn's "TURN REST API" convention: the username is ``<expiry-unix>:<participant-id>`` and the
password is ``base64(HMAC-SHA1(static-auth-secret, username))``. coturn recomputes the password from
its own copy of the secret, so nothing is stored per call, and refuses a username whose expiry has
passed, for the Allocate request and for every refresh of the allocation after it. Credentials are
therefore minted per participant when they enter the call (and again when they reconnect or ask),
short-lived but long enough for the call: until ``video_turn_after_end_s`` past the scheduled end,
and never less than ``video_turn_ttl_s`` from now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consult.video.settings import VideoSettings, require_secret
from rpm_core.clock import ensure_utc

__all__ = ["IceServer", "TurnCredential", "ice_servers", "turn_credential", "turn_expiry"]


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IceServer:
    """One entry of ``RTCConfiguration.iceServers`` (the browser's and aiortc's shape)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
            out["credential"] = self.credential
        return out


def turn_credential(secret: bytes, participant_id: str, expires_at: datetime) -> TurnCredential:
    """A TURN REST credential for one participant, valid until ``expires_at`` (whole seconds)."""
    if ":" in participant_id:
        raise ValueError("the participant id is the username's second field: it cannot contain ':'")
    expiry = int(ensure_utc(expires_at).timestamp())
    username = f"{expiry}:{participant_id}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), datetime.fromtimestamp(expiry, UTC))


def turn_expiry(settings: VideoSettings, *, now: datetime, scheduled_end: datetime | None) -> datetime:
    now = ensure_utc(now)
    floor = now + timedelta(seconds=settings.video_turn_ttl_s)
    if scheduled_end is None:
        return floor
    return max(floor, ensure_utc(scheduled_end) + timedelta(seconds=settings.video_turn_after_end_s))


def ice_servers(
    settings: VideoSettings, *, participant_id: str, now: datetime, scheduled_end: datetime | None = None
) -> list[IceServer]:
    """STUN servers as configured, and the TURN servers with credentials minted for this participant."""
    servers: list[IceServer] = []
    if settings.video_stun_urls:
        servers.append(IceServer(tuple(settings.video_stun_urls)))
    if settings.video_turn_urls:
        secret = require_secret(settings.video_turn_secret, "video_turn_secret")
        cred = turn_credential(secret, participant_id, turn_expiry(settings, now=now, scheduled_end=scheduled_end))
        servers.append(IceServer(tuple(settings.video_turn_urls), cred.username, cred.credential))
    return servers

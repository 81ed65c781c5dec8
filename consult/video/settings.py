"""Settings of video consultations (environment ``VIGIL_*`` over the TOML file, see rpm_core.settings).

The app's settings class derives from :class:`VideoSettings` (all fields are prefixed ``video_``), so
one object built in ``main`` carries them. Secrets are optional here so that processes without video
can load the class; :func:`require_secret` refuses a missing, short or placeholder secret where one
is used.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, SecretStr, field_validator

from consult.errors import VideoConfigError
from rpm_core.settings import VigilSettings

__all__ = ["MIN_SECRET_BYTES", "VideoSettings", "require_secret"]

MIN_SECRET_BYTES: Final = 32
_PLACEHOLDERS: Final = ("changeme", "change-me", "change_me", "replace-me", "replace_me", "your-secret")


class VideoSettings(VigilSettings):
    # Server secret the join links are signed with (HMAC-SHA256 of a key derived from it). At least
    # 32 bytes, random (e.g. `python -c "import secrets; print(secrets.token_urlsafe(48))"`).
    video_link_secret: SecretStr | None = None
    # Former link secrets still accepted when verifying (rotation: put the old one here, a new one
    # above; remove it once every link signed with it has expired).
    video_link_previous_secrets: tuple[SecretStr, ...] = ()
    # Lifetime of a join link for a consult started now (seconds).
    video_link_ttl_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 4 * 3600
    # A link for a scheduled consult is valid until this long after its scheduled end (seconds).
    video_link_after_end_s: Annotated[int, Field(ge=0, le=86_400)] = 3600

    # STUN servers handed to every participant, e.g. ["stun:turn.example.org:3478"].
    video_stun_urls: tuple[str, ...] = ()
    # TURN servers (coturn with use-auth-secret), e.g. ["turn:turn.example.org:3478?transport=udp",
    # "turns:turn.example.org:5349?transport=tcp"]; empty: no TURN (patients behind strict NATs fail).
    video_turn_urls: tuple[str, ...] = ()
    # coturn's static-auth-secret: TURN REST credentials are minted from it per participant and call.
    video_turn_secret: SecretStr | None = None
    # TURN credentials live this long when the call has no scheduled end (seconds).
    video_turn_ttl_s: Annotated[int, Field(ge=60, le=86_400)] = 3600
    # ...and until this long past the scheduled end when it has one (never less than video_turn_ttl_s
    # from now: coturn refuses refreshes of an allocation whose credential has expired).
    video_turn_after_end_s: Annotated[int, Field(ge=0, le=86_400)] = 600

    # A participant whose signalling connection drops keeps their place (waiting or in the call) this
    # long; rejoining within it resumes without a new admission.
    video_reconnect_grace_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    # Largest inbound signalling message (bytes of the WebSocket text frame).
    video_max_message_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 64 * 1024
    # Largest SDP in an offer or answer (bytes, UTF-8).
    video_max_sdp_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 32 * 1024
    # Longest in-call chat message (characters).
    video_max_chat_chars: Annotated[int, Field(ge=1, le=20_000)] = 2000
    # Inbound messages per second a connection may send on average, and the burst above it.
    video_rate_per_s: Annotated[float, Field(gt=0, le=10_000)] = 50.0
    video_rate_burst: Annotated[int, Field(ge=1, le=100_000)] = 200
    # Refused messages (invalid, misaddressed, over the rate) a connection may send before it is closed.
    video_max_errors: Annotated[int, Field(ge=1, le=10_000)] = 50
    # Outbound messages queued for one slow connection before it is closed.
    video_send_queue: Annotated[int, Field(ge=8, le=100_000)] = 512

    @field_validator("video_stun_urls", "video_turn_urls")
    @classmethod
    def _urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            scheme = url.split(":", 1)[0]
            if scheme not in ("stun", "stuns", "turn", "turns") or len(url) > 512:
                raise ValueError("ICE server URLs start with stun:, stuns:, turn: or turns:")
        return urls


def require_secret(value: SecretStr | None, field: str) -> bytes:
    """The secret's bytes, or :class:`VideoConfigError` if it is missing, short or a placeholder."""
    if value is None:
        raise VideoConfigError(field, "is not set")
    raw = value.get_secret_value().encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise VideoConfigError(field, f"must be at least {MIN_SECRET_BYTES} bytes")
    lowered = value.get_secret_value().lower()
    if lowered.startswith(_PLACEHOLDERS) or len(set(raw)) < 8:
        raise VideoConfigError(field, "looks like a placeholder, not a random secret")
    return raw

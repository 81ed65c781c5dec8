"""Join links: signed, expiring tokens bound to one room and one participant.

Format (version 1)::

    v1.<payload>.<tag>
    payload = base64url(JSON {"r": room_id, "p": participant_id, "g": generation, "e": expiry_unix, "k": kid})
    tag     = base64url(HMAC-SHA256(K, "vigil.video.join.v1." + payload))
    K       = HKDF-SHA256(server secret, info="vigil video join link v1")        (32 bytes)
    kid     = first 8 characters of base64url(SHA-256("kid" + K))

Why HMAC and not Ed25519: the server that mints a link is the only party that verifies it, so a
public key buys nothing; HMAC tokens are shorter (a URL a patient taps on a phone) and cheaper to
verify, and the derived key is used for nothing else (the HKDF ``info`` separates it from any other
use of the same secret). ``kid`` lets a rotated-out secret keep verifying until its links expire.

Verification needs no database: the tag, the expiry and the room the caller is joining are checked
here. A link stays revocable: the generation it carries must still equal the participant's row
(:mod:`consult.video.rooms` checks that on join, and removing a participant or reissuing their link
bumps it). The token travels in the URL fragment and then in the first WebSocket message, never in a
query string, so it stays out of server and proxy logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from consult.errors import JoinRefused
from consult.video.settings import VideoSettings, require_secret
from rpm_core.clock import ensure_utc

__all__ = ["MAX_TOKEN_CHARS", "JoinClaims", "JoinLinkSigner", "join_url"]

MAX_TOKEN_CHARS: Final = 512
_PREFIX: Final = "v1."
_MAC_CONTEXT: Final = b"vigil.video.join.v1."
_HKDF_INFO: Final = b"vigil video join link v1"
_ID: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")
_B64: Final = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class JoinClaims:
    room_id: str
    participant_id: str
    generation: int
    expires_at: datetime
    kid: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict base64url: only the canonical encoding of some bytes (no two texts decode alike)."""
    if _B64.fullmatch(text) is None:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not the canonical base64url encoding")
    return raw


def _derive(secret: bytes) -> tuple[str, bytes]:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)
    kid = _b64(hashlib.sha256(b"kid" + key).digest())[:8]
    return kid, key


class JoinLinkSigner:
    """Mints and verifies join tokens with the current secret; verifies with previous ones too."""

    def __init__(self, secret: bytes, *, previous: Sequence[bytes] = ()) -> None:
        self._kid, self._key = _derive(secret)
        self._keys: dict[str, bytes] = {self._kid: self._key}
        for old in previous:
            kid, key = _derive(old)
            self._keys.setdefault(kid, key)

    @classmethod
    def from_settings(cls, settings: VideoSettings, *, fallback: SecretStr | None = None) -> JoinLinkSigner:
        """The signer of ``video_link_secret``; unset, of ``fallback`` (the app passes its API secret
        key: the HKDF ``info`` above keeps the derived key from serving any other purpose)."""
        chosen = settings.video_link_secret if settings.video_link_secret is not None else fallback
        secret = require_secret(chosen, "video_link_secret")
        previous = [require_secret(s, "video_link_previous_secrets") for s in settings.video_link_previous_secrets]
        return cls(secret, previous=previous)

    def mint(self, *, room_id: str, participant_id: str, generation: int, expires_at: datetime) -> str:
        if _ID.fullmatch(room_id) is None or _ID.fullmatch(participant_id) is None or generation < 1:
            raise ValueError("room and participant ids are 8-64 url-safe characters, generation >= 1")
        body = {
            "r": room_id,
            "p": participant_id,
            "g": generation,
            "e": int(ensure_utc(expires_at).timestamp()),
            "k": self._kid,
        }
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        tag = hmac.new(self._key, _MAC_CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()
        return f"{_PREFIX}{payload}.{_b64(tag)}"

    def verify(self, token: object, *, room_id: str, now: datetime) -> JoinClaims:
        """The claims of a genuine, unexpired token for ``room_id``; :class:`JoinRefused` otherwise.

        Checks in this order: shape, key id, tag (constant time), expiry, room. Nothing from an
        unauthenticated payload is trusted before the tag matches.
        """
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.startswith(_PREFIX):
            raise JoinRefused("malformed", room_id=room_id)
        parts = token[len(_PREFIX) :].split(".")
        if len(parts) != 2:
            raise JoinRefused("malformed", room_id=room_id)
        payload, tag_text = parts
        try:
            body = json.loads(_unb64(payload))
            tag = _unb64(tag_text)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise JoinRefused("malformed", room_id=room_id) from None
        if not isinstance(body, dict) or not isinstance(body.get("k"), str):
            raise JoinRefused("malformed", room_id=room_id)
        key = self._keys.get(body["k"])
        if key is None:
            raise JoinRefused("unknown_key", room_id=room_id)
        expected = hmac.new(key, _MAC_CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, tag):
            raise JoinRefused("bad_signature", room_id=room_id)
        claims = _claims(body, room_id)
        if claims.expires_at <= ensure_utc(now):
            raise JoinRefused("expired", room_id=room_id, participant_id=claims.participant_id)
        if not hmac.compare_digest(claims.room_id.encode(), room_id.encode()):
            raise JoinRefused("wrong_room", room_id=room_id, participant_id=claims.participant_id)
        return claims


def _claims(body: dict[str, object], room_id: str) -> JoinClaims:
    r, p, g, e, k = (body.get(name) for name in ("r", "p", "g", "e", "k"))
    if not (
        isinstance(r, str)
        and isinstance(p, str)
        and isinstance(g, int)
        and isinstance(e, int)
        and isinstance(k, str)
        and not isinstance(g, bool)
        and not isinstance(e, bool)
        and g >= 1
        and 0 < e < 2**40
    ):
        raise JoinRefused("malformed", room_id=room_id)
    return JoinClaims(r, p, g, datetime.fromtimestamp(e, UTC), k)


def join_url(base_url: str, room_id: str, token: str) -> str:
    """The link a participant opens: the token in the fragment (never sent to the server by browsers)."""
    return f"{base_url.rstrip('/')}/consult/rooms/{room_id}/join#t={token}"

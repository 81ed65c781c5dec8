"""Acknowledgement links: signed, single-use, expiring, bound to one alert and one recipient.

A link is ``{public_url}/ack/{alert_id}/{token}``. The token is base64url (no padding) of::

    version (1 byte, 1) | link id (16, the ack_links row's UUID) | alert id (8, big-endian)
    | recipient user id (16, UUID) | expiry (8, big-endian Unix seconds) | MAC (16)

where MAC is the first 16 bytes of HMAC-SHA256 over everything before it, keyed with a subkey of
the API's secret key (HKDF-SHA256, info ``vigil ack-link v1``): the API verifies links and the
delivery worker makes them with the same secret, and nobody without it can make or alter one.
The row ``ack_links`` (store.ack_links) makes a link single-use; the token is never stored.

:meth:`AckLinkSigner.verify` checks the format and the MAC only; the caller then checks, in this
order, that the link names the alert in the path and the signed-in user (a refusal that says
nothing), that it has not expired and has not been used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consult.notify.errors import AckLinkInvalid
from rpm_core.clock import ensure_utc

__all__ = ["AckClaim", "AckLinkSigner", "ack_path"]

_VERSION: Final = 1
_BODY: Final = struct.Struct(">B16sq16sq")
_MAC_LEN: Final = 16
_TOKEN_LEN: Final = _BODY.size + _MAC_LEN
_MAX_TEXT: Final = 200


@dataclass(frozen=True, slots=True)
class AckClaim:
    link_id: str
    alert_id: int
    user_id: str
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return ensure_utc(now) >= self.expires_at


def ack_path(alert_id: int, token: str) -> str:
    """The path of a link (the API serves it; prefix it with the public URL)."""
    return f"/ack/{alert_id}/{token}"


class AckLinkSigner:
    """Makes and checks link tokens with a key derived from the API's secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("an ack-link key has at least 32 bytes")
        self._key = key

    @classmethod
    def from_secret(cls, api_secret: str) -> AckLinkSigner:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vigil ack-link v1").derive(
            api_secret.encode("utf-8")
        )
        return cls(key)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_LEN]

    def token(self, claim: AckClaim) -> str:
        body = _BODY.pack(
            _VERSION,
            uuid.UUID(claim.link_id).bytes,
            claim.alert_id,
            uuid.UUID(claim.user_id).bytes,
            int(ensure_utc(claim.expires_at).timestamp()),
        )
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")

    def verify(self, token: str) -> AckClaim:
        """The claim of a well-formed token with a valid MAC; raises :class:`AckLinkInvalid`."""
        if not token or len(token) > _MAX_TEXT or not token.isascii():
            raise AckLinkInvalid("malformed")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError as exc:
            raise AckLinkInvalid("malformed") from exc
        if len(raw) != _TOKEN_LEN:
            raise AckLinkInvalid("malformed")
        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        if not hmac.compare_digest(self._mac(body), mac):
            raise AckLinkInvalid("signature")
        version, link, alert_id, user, expires = _BODY.unpack(body)
        if version != _VERSION or alert_id <= 0:
            raise AckLinkInvalid("malformed")
        try:
            expires_at = datetime.fromtimestamp(expires, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise AckLinkInvalid("malformed") from exc
        return AckClaim(str(uuid.UUID(bytes=link)), alert_id, str(uuid.UUID(bytes=user)), expires_at)

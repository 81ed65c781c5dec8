"""Secrets of the API: subkeys derived from the one secret key, random tokens and their hashes.

- Session ids, bearer tokens and reset links are 256-bit random secrets; only their SHA-256 is
  stored, so a copy of the database signs nobody in.
- The CSRF token is an HMAC of the session secret (it needs no storage and dies with the session).
- TOTP secrets are sealed with AES-256-GCM, bound to the user id as associated data.
- Cursors are signed (HMAC) so a client cannot forge a position in someone else's list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ApiKeys", "b64d", "b64e", "new_secret", "secret_hash"]

_NONCE: Final = 12


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode unpadded base64url; raises ValueError on anything else."""
    if len(text) > 4096 or not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_secret() -> str:
    """A fresh 256-bit secret as base64url text (what a cookie, token or link carries)."""
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> bytes:
    """What the database keeps of a secret."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"vigil-api {purpose} v1".encode()).derive(master)


@dataclass(frozen=True, slots=True)
class ApiKeys:
    cursor_key: bytes
    csrf_key: bytes
    seal_key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> ApiKeys:
        master = secret.encode("utf-8")
        return cls(_derive(master, "cursor"), _derive(master, "csrf"), _derive(master, "totp-seal"))

    def csrf_token(self, session_secret: str) -> str:
        return b64e(hmac.new(self.csrf_key, session_secret.encode("utf-8"), hashlib.sha256).digest())

    def csrf_ok(self, session_secret: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf_token(session_secret), presented)

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.cursor_key, data, hashlib.sha256).digest()[:16]

    def seal(self, plaintext: bytes, *, bound_to: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.seal_key).encrypt(nonce, plaintext, bound_to.encode("utf-8"))

    def unseal(self, sealed: bytes, *, bound_to: str) -> bytes:
        """Raises ``cryptography.exceptions.InvalidTag`` when the key changed or the data was altered."""
        return AESGCM(self.seal_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], bound_to.encode("utf-8"))

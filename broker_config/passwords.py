"""Broker passwords: Mosquitto 2's PBKDF2-HMAC-SHA512 hashes, in the ``$7$`` text form we store.

::

    $7$<iterations>$<base64 12-byte salt>$<base64 PBKDF2-HMAC-SHA512 digest, 64 bytes>

This is what ``mosquitto_passwd`` writes, and the same three values (iterations, salt, digest)
are what Mosquitto's dynamic security plugin keeps per client in its JSON file (``iterations``,
``salt``, ``password``): :func:`split_hash` converts. Only the hash is stored (in the database, so
the broker's access can be rendered again at any time); the password itself goes once into the
agent's enrollment bundle, or into a 0600 file of the server key directory for service accounts.
Passwords are 32 random bytes, so Mosquitto's default of 101 iterations is not what protects them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_ITERATIONS", "PasswordHash", "hash_password", "new_password", "split_hash", "verify_password"]

DEFAULT_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
DIGEST_BYTES: Final = 64
_HASH: Final = re.compile(r"\$7\$(\d{1,9})\$([A-Za-z0-9+/=]{16})\$([A-Za-z0-9+/=]{88})")


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """The parts of a ``$7$`` hash, base64 as Mosquitto writes them."""

    iterations: int
    salt_b64: str
    digest_b64: str


def new_password() -> str:
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The ``$7$`` hash Mosquitto 2 checks (PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte digest)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def split_hash(hashed: str) -> PasswordHash | None:
    """The parts of a well-formed ``$7$`` hash (12-byte salt, 64-byte digest); None otherwise."""
    m = _HASH.fullmatch(hashed)
    if m is None or int(m[1]) < 1:
        return None
    try:
        salt, digest = base64.b64decode(m[2], validate=True), base64.b64decode(m[3], validate=True)
    except ValueError:
        return None
    if len(salt) != SALT_BYTES or len(digest) != DIGEST_BYTES:
        return None
    return PasswordHash(int(m[1]), m[2], m[3])


def verify_password(password: str, hashed: str) -> bool:
    parts = split_hash(hashed)
    if parts is None:
        return False
    salt, want = base64.b64decode(parts.salt_b64), base64.b64decode(parts.digest_b64)
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, parts.iterations), want)

"""Mosquitto's password file and ACL file, rendered from the list of agents the server knows.

Password hashes use Mosquitto 2's own format (what ``mosquitto_passwd`` writes)::

    username:$7$<iterations>$<base64 12-byte salt>$<base64 PBKDF2-HMAC-SHA512 digest, 64 bytes>

Only the hash is stored (in the database, so the files can be rendered again at any time); the
password itself goes once into the agent's enrollment bundle. Passwords are 32 random bytes, so
Mosquitto's default of 101 iterations is not what protects them.

The ACL gives each agent its own subtree only (publish ``vigil/v1/{org}/{agent}/up/#``, subscribe
``.../down/#``) and the ingest service account the shared subscription over every agent's uplink
and publishing on every downlink. ``user`` blocks name exact topics: no pattern substitution, so
a username can never widen its own grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from rpm_core.ids import AgentId, OrgId
from rpm_core.topics import INGEST_GROUP, PREFIX, Direction, Topic, ingest_subscription

__all__ = [
    "INGEST_USERNAME",
    "AgentAccount",
    "ServiceAccount",
    "hash_password",
    "new_password",
    "render_acl",
    "render_password_file",
    "verify_password",
]

INGEST_USERNAME: Final = "vigil-ingest"
DEFAULT_ITERATIONS: Final = 101
_HASH: Final = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def new_password() -> str:
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The ``$7$`` hash Mosquitto 2 checks (PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte digest)."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    m = _HASH.fullmatch(hashed)
    if m is None:
        return False
    salt, want = base64.b64decode(m[2]), base64.b64decode(m[3])
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(m[1])), want)


@dataclass(frozen=True, slots=True)
class AgentAccount:
    """An agent allowed on the broker: its MQTT username is its agent id."""

    org: OrgId
    agent: AgentId
    password_hash: str

    @property
    def username(self) -> str:
        return self.agent


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    username: str
    password_hash: str


def _check(username: str, password_hash: str) -> None:
    if _USERNAME.fullmatch(username) is None:
        raise ValueError(f"unsafe broker username {username[:70]!r}")
    if _HASH.fullmatch(password_hash) is None:
        raise ValueError(f"password hash of {username} is not in Mosquitto's $7$ format")


def render_password_file(agents: Iterable[AgentAccount], services: Iterable[ServiceAccount]) -> str:
    pairs = [(s.username, s.password_hash) for s in services] + [(a.username, a.password_hash) for a in agents]
    lines = []
    for username, password_hash in pairs:
        _check(username, password_hash)
        lines.append(f"{username}:{password_hash}")
    return "\n".join(lines) + "\n"


def render_acl(agents: Iterable[AgentAccount], *, ingest_username: str = INGEST_USERNAME) -> str:
    """The ACL file. With an ACL file Mosquitto denies whatever is not granted here."""
    lines = [
        "# Vigil broker ACL, rendered from the agents table. Do not edit: `vigil broker render`.",
        "# Nothing is granted to anonymous clients (allow_anonymous is false anyway).",
        "",
        f"user {ingest_username}",
        f"topic read {ingest_subscription(INGEST_GROUP)}",
        f"topic read {PREFIX}/+/+/{Direction.UP}/#",
        f"topic write {PREFIX}/+/+/{Direction.DOWN}/#",
    ]
    for acc in sorted(agents, key=lambda a: a.agent):
        _check(acc.username, acc.password_hash)
        lines += [
            "",
            f"user {acc.username}",
            f"topic write {Topic.agent_filter(acc.org, acc.agent, Direction.UP)}",
            f"topic read {Topic.agent_filter(acc.org, acc.agent, Direction.DOWN)}",
        ]
    return "\n".join(lines) + "\n"

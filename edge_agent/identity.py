"""The agent's key store and enrollment files: what ``vigil edge enroll`` writes and the agent reads.

Layout of the enrollment directory (default ``/etc/vigil/edge``, and ``keys/``: mode 0700; private
files mode 0600)::

    agent.toml          the agent configuration (settings, the allow-list)          0640
    ca.pem              the CA that signed the broker's certificate                  0644
    server_keys.json    the server's public keys (encrypt to, verify receipts with)  0644
    credentials.json    MQTT username/password, the bundle's expiry                  0600
    keys/sign.pem       the agent's Ed25519 signing key (generated here, never leaves) 0600
    keys/kex.pem        the agent's X25519 key agreement key                         0600
    keys/outbox.key     32 random bytes: the outbox's ChaCha20-Poly1305 key          0600

The outbox key is separate from the signing keys on purpose: it encrypts data at rest only and is
never sent anywhere; losing it makes the outbox unreadable (the agent refuses to start, see
:class:`~edge_agent.errors.OutboxKeyMismatch`). The one-time enrollment token is not kept here but
sealed in the outbox until the registration is accepted (:mod:`edge_agent.outbox.store`); an
identity enrolled by an older version still has it in ``credentials.json``
(:attr:`AgentIdentity.enrollment_token`), used only if the outbox holds none.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from edge_agent.errors import EnrollmentError
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, Secret, ServerKeyInfo
from rpm_core.errors import ConfigError
from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentKeys, ServerPublicKey
from rpm_core.keystore import ensure_private_dir, write_private

__all__ = ["OUTBOX_KEY_BYTES", "AgentIdentity", "IdentityFiles", "write_identity"]

OUTBOX_KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_keys(self) -> Path:
        return self.directory / "server_keys.json"

    @property
    def credentials(self) -> Path:
        return self.directory / "credentials.json"

    @property
    def sign_key(self) -> Path:
        return self.directory / "keys" / "sign.pem"

    @property
    def kex_key(self) -> Path:
        return self.directory / "keys" / "kex.pem"

    @property
    def outbox_key(self) -> Path:
        return self.directory / "keys" / "outbox.key"

    def private_files(self) -> tuple[Path, ...]:
        return (self.credentials, self.sign_key, self.kex_key, self.outbox_key)

    def all_files(self) -> tuple[Path, ...]:
        return (self.ca, self.server_keys, *self.private_files())


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Everything secret or trusted the running agent needs, loaded once at start."""

    org: OrgId
    agent: AgentId
    keys: AgentKeys = field(repr=False)
    outbox_key: bytes = field(repr=False)
    mqtt_username: str
    mqtt_password: str = field(repr=False)
    bundle_expires_at: datetime
    ca_pem: str
    server_keys: tuple[ServerKeyInfo, ...]
    # Only in identities enrolled before the token moved into the outbox (see the module docstring).
    enrollment_token: str | None = field(default=None, repr=False, kw_only=True)

    @property
    def server(self) -> ServerPublicKey:
        """The current server key (first listed): what the agent encrypts to."""
        return self.server_keys[0].public()

    @property
    def trusted(self) -> tuple[ServerPublicKey, ...]:
        """Every server key a receipt or config message may be signed with."""
        return tuple(k.public() for k in self.server_keys)

    def registration_bundle(self, *, host: str, port: int, server_name: str, token: str) -> EnrollmentBundle:
        """The bundle again, as :func:`rpm_core.enrollment.seal_registration` takes it."""
        return EnrollmentBundle(
            org=self.org,
            agent_id=self.agent,
            broker=BrokerEndpoint(host=host, port=port, server_name=server_name, ca_pem=self.ca_pem),
            mqtt_username=self.mqtt_username,
            mqtt_password=Secret(self.mqtt_password),
            enrollment_token=Secret(token),
            server_keys=self.server_keys,
            expires_at=self.bundle_expires_at,
        )

    @classmethod
    def load(cls, directory: Path, *, org: OrgId, agent: AgentId) -> AgentIdentity:
        """Read the enrollment directory; raises :class:`EnrollmentError` naming the file."""
        files = IdentityFiles(directory)
        creds, servers = _json(files.credentials), _json(files.server_keys)
        if not isinstance(creds, dict) or not isinstance(servers, list):
            raise EnrollmentError("identity files are damaged; enroll again", path=directory)
        try:
            keys = AgentKeys.from_pem(_read(files.sign_key), _read(files.kex_key))
            server_keys = tuple(ServerKeyInfo.from_doc(s) for s in servers)
            for key in server_keys:
                key.public()
            identity = cls(
                org=org,
                agent=agent,
                keys=keys,
                outbox_key=_read(files.outbox_key),
                mqtt_username=str(creds["mqtt_username"]),
                mqtt_password=str(creds["mqtt_password"]),
                enrollment_token=None if creds.get("enrollment_token") is None else str(creds["enrollment_token"]),
                bundle_expires_at=datetime.fromisoformat(str(creds["bundle_expires_at"])),
                ca_pem=_read(files.ca).decode(),
                server_keys=server_keys,
            )
        except (ConfigError, KeyError, TypeError, ValueError) as exc:  # ContractError is a ValueError
            raise EnrollmentError("identity files are damaged; enroll again", path=directory) from exc
        if len(identity.outbox_key) != OUTBOX_KEY_BYTES or not identity.server_keys:
            raise EnrollmentError("outbox key or server keys missing; enroll again", path=directory)
        return identity


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EnrollmentError(f"cannot read ({exc.strerror}); is this agent enrolled?", path=path) from exc


def _json(path: Path) -> object:
    try:
        return json.loads(_read(path))
    except ValueError as exc:
        raise EnrollmentError("not JSON", path=path) from exc


def write_identity(
    directory: Path, bundle: EnrollmentBundle, keys: AgentKeys, *, owner: tuple[int, int] | None = None
) -> bytes:
    """Write the identity files for ``bundle``; returns the new outbox key.

    ``owner`` (uid, gid) becomes the owner of every file and directory written (the service user),
    so the agent can read its 0600 files while nobody else can. The enrollment token is not written
    here: the caller seals it into the new outbox.
    """
    files = IdentityFiles(directory)
    ensure_private_dir(directory)
    ensure_private_dir(directory / "keys")
    outbox_key = secrets.token_bytes(OUTBOX_KEY_BYTES)
    credentials = {
        "mqtt_username": bundle.mqtt_username,
        "mqtt_password": bundle.mqtt_password.get_secret_value(),
        "bundle_expires_at": bundle.expires_at.isoformat(),
    }
    write_private(files.credentials, json.dumps(credentials, indent=2).encode())
    write_private(files.sign_key, keys.sign_pem())
    write_private(files.kex_key, keys.kex_pem())
    write_private(files.outbox_key, outbox_key)
    servers = [k.to_doc() for k in bundle.server_keys]
    write_private(files.server_keys, json.dumps(servers, indent=2).encode())
    write_private(files.ca, bundle.broker.ca_pem.encode())
    files.server_keys.chmod(0o644)
    files.ca.chmod(0o644)
    if owner is not None:
        for path in (directory, directory / "keys", *files.all_files()):
            os.chown(path, *owner)
    return outbox_key

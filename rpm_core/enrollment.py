"""Enrollment: how a new agent gets its broker credentials and how its public keys reach the server.

1. ``vigil agents create`` (server side) writes the agent row (status ``pending``) and an
   :class:`EnrollmentBundle` file: broker address and CA, the agent's MQTT credentials, the server's
   public keys, and a one-time enrollment token (only its SHA-256 is kept on the server).
2. ``vigil edge enroll --bundle FILE`` (on the Pi) generates the agent's Ed25519 and X25519 keys
   locally (mode 0600; they never leave the device) and writes the agent config.
3. On its first connection the agent publishes a *registration* on ``.../up/status``: a normal
   sealed envelope (encrypted to the server, so the broker never sees the token) whose body carries
   the new public keys and the token, signed with the new Ed25519 key. The server checks the token,
   that the envelope was sealed with the X25519 key it announces and signed with the Ed25519 key it
   announces, then records the keys and activates the agent. A pending agent can only register; an
   active agent cannot register again (re-enrolling needs a new bundle).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import cbor2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from rpm_core.clock import ensure_utc
from rpm_core.envelope import (
    ENVELOPE_VERSION,
    decrypt_envelope,
    seal_envelope,
    signed_payload_unverified,
    verify_signed,
)
from rpm_core.errors import BindingMismatch, ConfigError, MalformedEnvelope, UnsupportedVersion
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.keys import AgentKeys, AgentPublicKeys, ServerKey, ServerPublicKey
from rpm_core.topics import Topic

__all__ = [
    "BrokerEndpoint",
    "EnrollmentBundle",
    "Registration",
    "ServerKeyInfo",
    "new_token",
    "open_registration",
    "seal_registration",
    "token_digest",
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token() -> str:
    return _b64(secrets.token_bytes(32))


def token_digest(token: str) -> bytes:
    """What the server stores instead of the token."""
    return hashlib.sha256(token.encode()).digest()


class BrokerEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(gt=0, lt=65536)] = 8883
    # The TLS name the broker's certificate carries (may differ from the address dialled).
    server_name: Annotated[str, Field(min_length=1, max_length=253)]
    ca_pem: Annotated[str, Field(min_length=1, max_length=20_000)]


class ServerKeyInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kid: str
    kex: str  # base64url raw X25519 public key
    sign: str  # base64url raw Ed25519 public key

    @classmethod
    def of(cls, key: ServerPublicKey) -> ServerKeyInfo:
        return cls(kid=key.kid, kex=_b64(key.kex), sign=_b64(key.sign))

    def public(self) -> ServerPublicKey:
        try:
            key = ServerPublicKey(kex=_unb64(self.kex), sign=_unb64(self.sign))
        except ValueError as exc:
            raise ConfigError("server key in bundle is not base64url") from exc
        if key.kid != self.kid:
            raise ConfigError("server key id does not match the key")
        return key


class EnrollmentBundle(BaseModel):
    """The file an operator carries from ``vigil agents create`` to ``vigil edge enroll``.

    It holds credentials (MQTT password, enrollment token): treat it like a password, mode 0600,
    delete it after enrollment. It holds no private key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    org: OrgId
    agent_id: AgentId
    broker: BrokerEndpoint
    mqtt_username: Annotated[str, Field(min_length=1, max_length=128)]
    mqtt_password: SecretStr
    enrollment_token: SecretStr
    server_keys: Annotated[tuple[ServerKeyInfo, ...], Field(min_length=1, max_length=4)]
    expires_at: datetime

    @field_validator("org")
    @classmethod
    def _org(cls, v: str) -> str:
        return org_id(v)

    @field_validator("agent_id")
    @classmethod
    def _agent(cls, v: str) -> str:
        return agent_id(v)

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return ensure_utc(v)

    def current_server_key(self) -> ServerPublicKey:
        return self.server_keys[0].public()

    def to_json(self) -> str:
        doc = self.model_dump(mode="json")
        doc["mqtt_password"] = self.mqtt_password.get_secret_value()
        doc["enrollment_token"] = self.enrollment_token.get_secret_value()
        return json.dumps(doc, indent=2)

    @classmethod
    def from_json(cls, text: str) -> EnrollmentBundle:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise ConfigError(f"not a valid enrollment bundle ({fields})") from exc

    @classmethod
    def read(cls, path: Path) -> EnrollmentBundle:
        try:
            return cls.from_json(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read enrollment bundle {path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class Registration:
    org: OrgId
    agent: AgentId
    keys: AgentPublicKeys
    token: str
    agent_version: str

    def token_matches(self, digest: bytes) -> bool:
        return hmac.compare_digest(token_digest(self.token), digest)


def seal_registration(bundle: EnrollmentBundle, keys: AgentKeys, *, agent_version: str) -> tuple[Topic, bytes]:
    topic = Topic.status(bundle.org, bundle.agent_id)
    pub = keys.public()
    body = {
        "v": ENVELOPE_VERSION,
        "type": "register",
        "org": bundle.org,
        "agent": bundle.agent_id,
        "sign": pub.sign,
        "kex": pub.kex,
        "token": bundle.enrollment_token.get_secret_value(),
        "agent_version": agent_version,
    }
    data = seal_envelope(cbor2.dumps(body, canonical=True), topic=topic, agent=keys, server=bundle.current_server_key())
    return topic, data


def open_registration(data: bytes, *, topic: Topic, server_keys: Mapping[str, ServerKey]) -> Registration:
    """Open a registration; it proves possession of the keys it announces. The caller checks the token."""
    signed, sender_kex = decrypt_envelope(data, topic=topic, server_keys=server_keys, sender_kex=None)
    try:
        doc: Any = cbor2.loads(signed_payload_unverified(signed))
    except Exception as exc:  # any decoder failure on hostile bytes (see rpm_core.errors)
        raise MalformedEnvelope("registration body is not CBOR") from exc
    if not isinstance(doc, dict) or doc.get("type") != "register":
        raise MalformedEnvelope("not a registration")
    if doc.get("v") != ENVELOPE_VERSION:
        raise UnsupportedVersion(doc.get("v"))
    sign, kex, token, version = doc.get("sign"), doc.get("kex"), doc.get("token"), doc.get("agent_version", "")
    if not (isinstance(sign, bytes) and isinstance(kex, bytes) and isinstance(token, str) and isinstance(version, str)):
        raise MalformedEnvelope("bad registration fields")
    try:
        keys = AgentPublicKeys(sign=sign, kex=kex)
    except ConfigError as exc:
        raise MalformedEnvelope("bad public keys") from exc
    if kex != sender_kex:
        raise BindingMismatch("key agreement key")
    verify_signed(signed, topic=topic, agent=keys)
    if doc.get("org") != topic.org or doc.get("agent") != topic.agent:
        raise BindingMismatch("agent")
    return Registration(topic.org, topic.agent, keys, token, version[:64])

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

Sealing a registration is here; opening it is the server's (``ingest.opener``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import cbor2

from rpm_core.checks import aware, fail, integer, iso_datetime, known_fields, text
from rpm_core.envelope import ENVELOPE_VERSION, seal_envelope
from rpm_core.errors import ConfigError, ContractError, InvalidField
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.keys import AgentKeys, AgentPublicKeys, ServerPublicKey
from rpm_core.topics import Topic

__all__ = [
    "BrokerEndpoint",
    "EnrollmentBundle",
    "Registration",
    "Secret",
    "ServerKeyInfo",
    "new_token",
    "seal_registration",
    "token_digest",
]

_SET = object.__setattr__


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token() -> str:
    return _b64(secrets.token_bytes(32))


def token_digest(token: str) -> bytes:
    """What the server stores instead of the token."""
    return hashlib.sha256(token.encode()).digest()


class Secret:
    """A text that never shows in ``repr`` or ``str`` (a password, a token): ``get_secret_value()``
    is the only way to it. Equal when the texts are equal."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a text")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


def _secret(field: str, v: object) -> Secret:
    if isinstance(v, Secret):
        return v
    if not isinstance(v, str):
        fail(field, "string_type", "must be a text")
    return Secret(v)


def _from_doc(cls: type[Any], doc: object, where: str, convert: Mapping[str, Any] | None = None) -> Any:
    """``cls(**doc)`` for a document read from a file: unknown keys and missing fields named."""
    values = dict(known_fields(where, doc, [f.name for f in fields(cls)]))
    for name, make in (convert or {}).items():
        if name in values:
            values[name] = make(values[name])
    missing = [
        f.name for f in fields(cls) if f.name not in values and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        fail(f"{where}.{missing[0]}" if where else missing[0], "missing", "is required")
    return cls(**values)


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    host: str
    # The TLS name the broker's certificate carries (may differ from the address dialled).
    server_name: str
    ca_pem: str
    port: int = 8883

    def __post_init__(self) -> None:
        text("broker.host", self.host, min_length=1, max_length=253)
        integer("broker.port", self.port, gt=0, lt=65536)
        text("broker.server_name", self.server_name, min_length=1, max_length=253)
        text("broker.ca_pem", self.ca_pem, min_length=1, max_length=20_000)

    def to_doc(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "server_name": self.server_name, "ca_pem": self.ca_pem}


@dataclass(frozen=True, slots=True)
class ServerKeyInfo:
    kid: str
    kex: str  # base64url raw X25519 public key
    sign: str  # base64url raw Ed25519 public key

    def __post_init__(self) -> None:
        text("server_keys.kid", self.kid)
        text("server_keys.kex", self.kex)
        text("server_keys.sign", self.sign)

    @classmethod
    def of(cls, key: ServerPublicKey) -> ServerKeyInfo:
        return cls(kid=key.kid, kex=_b64(key.kex), sign=_b64(key.sign))

    @classmethod
    def from_doc(cls, doc: object) -> ServerKeyInfo:
        info: ServerKeyInfo = _from_doc(cls, doc, "server_keys")
        return info

    def to_doc(self) -> dict[str, Any]:
        return {"kid": self.kid, "kex": self.kex, "sign": self.sign}

    def public(self) -> ServerPublicKey:
        try:
            key = ServerPublicKey(kex=_unb64(self.kex), sign=_unb64(self.sign))
        except ValueError as exc:
            raise ConfigError("server key in bundle is not base64url") from exc
        if key.kid != self.kid:
            raise ConfigError("server key id does not match the key")
        return key


_MAX_SERVER_KEYS: Final = 4


@dataclass(frozen=True, slots=True)
class EnrollmentBundle:
    """The file an operator carries from ``vigil agents create`` to ``vigil edge enroll``.

    It holds credentials (MQTT password, enrollment token): treat it like a password, mode 0600,
    delete it after enrollment. It holds no private key. The secrets may be given as text; they are
    kept as :class:`Secret`.
    """

    org: OrgId
    agent_id: AgentId
    broker: BrokerEndpoint
    mqtt_username: str
    mqtt_password: Secret
    enrollment_token: Secret
    server_keys: tuple[ServerKeyInfo, ...]
    expires_at: datetime
    v: Literal[1] = 1

    def __post_init__(self) -> None:
        if type(self.v) is not int or self.v != 1:
            fail("v", "literal_error", "must be 1")
        _SET(self, "org", org_id(self.org))
        _SET(self, "agent_id", agent_id(self.agent_id))
        if not isinstance(self.broker, BrokerEndpoint):
            fail("broker", "model_type", "must be a broker endpoint")
        text("mqtt_username", self.mqtt_username, min_length=1, max_length=128)
        _SET(self, "mqtt_password", _secret("mqtt_password", self.mqtt_password))
        _SET(self, "enrollment_token", _secret("enrollment_token", self.enrollment_token))
        keys = self.server_keys
        if not isinstance(keys, tuple | list):
            fail("server_keys", "tuple_type", "must be an array of keys")
        if not 1 <= len(keys) <= _MAX_SERVER_KEYS:
            fail("server_keys", "too_long" if keys else "too_short", f"must hold 1 to {_MAX_SERVER_KEYS} keys")
        if not all(isinstance(k, ServerKeyInfo) for k in keys):
            fail("server_keys", "model_type", "must be server keys")
        _SET(self, "server_keys", tuple(keys))
        _SET(self, "expires_at", aware("expires_at", self.expires_at))

    def current_server_key(self) -> ServerPublicKey:
        return self.server_keys[0].public()

    def to_json(self) -> str:
        doc = {
            "v": self.v,
            "org": self.org,
            "agent_id": self.agent_id,
            "broker": self.broker.to_doc(),
            "mqtt_username": self.mqtt_username,
            "mqtt_password": self.mqtt_password.get_secret_value(),
            "enrollment_token": self.enrollment_token.get_secret_value(),
            "server_keys": [k.to_doc() for k in self.server_keys],
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
        }
        return json.dumps(doc, indent=2)

    @classmethod
    def from_json(cls, text_: str) -> EnrollmentBundle:
        try:
            doc = json.loads(text_)
            bundle: EnrollmentBundle = _from_doc(
                cls,
                doc,
                "",
                {
                    "broker": lambda d: _from_doc(BrokerEndpoint, d, "broker"),
                    "server_keys": _server_keys,
                    "expires_at": lambda v: iso_datetime("expires_at", v),
                },
            )
        except InvalidField as exc:
            raise ConfigError(f"not a valid enrollment bundle ({exc.field})") from exc
        except ContractError as exc:  # an organisation or agent id that is not one
            raise ConfigError(f"not a valid enrollment bundle ({exc.reason})") from exc
        except (ValueError, RecursionError) as exc:  # not JSON
            raise ConfigError("not a valid enrollment bundle (not JSON)") from exc
        return bundle

    @classmethod
    def read(cls, path: Path) -> EnrollmentBundle:
        try:
            return cls.from_json(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read enrollment bundle {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("not a valid enrollment bundle (not UTF-8)") from exc


def _server_keys(v: object) -> tuple[ServerKeyInfo, ...]:
    if not isinstance(v, list):
        fail("server_keys", "tuple_type", "must be an array of keys")
    return tuple(ServerKeyInfo.from_doc(k) for k in v[: _MAX_SERVER_KEYS + 1])


@dataclass(frozen=True, slots=True)
class Registration:
    """A registration as the server opened it (``ingest.opener.EnvelopeOpener.open_registration``)."""

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

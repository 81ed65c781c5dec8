"""Key material for the envelope: agents sign (Ed25519) and agree keys (X25519); the server agrees
keys (X25519) and signs receipts (Ed25519).

Private keys are generated where they live (an agent's on the Pi) and serialised as unencrypted
PKCS#8 PEM files readable only by their owner (mode 0600). A key id (``kid``) is the first 8 bytes
of the SHA-256 of the raw public key, hex-encoded: stable, derived, and cheap to look up, so the
server can hold several keys at once while it rotates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from rpm_core.errors import ConfigError

__all__ = [
    "AgentKeys",
    "AgentPublicKeys",
    "ServerKey",
    "ServerPublicKey",
    "kid_of",
    "load_private_pem",
]


def kid_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).digest()[:8].hex()


def _raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)


def _pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def load_private_pem(data: bytes) -> Ed25519PrivateKey | X25519PrivateKey:
    try:
        key = ser.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("not an unencrypted PKCS#8 PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
        raise ConfigError(f"unsupported private key type {type(key).__name__}")
    return key


@dataclass(frozen=True, slots=True)
class AgentPublicKeys:
    """What the server registers for an agent."""

    sign: bytes  # raw Ed25519 public key, 32 bytes
    kex: bytes  # raw X25519 public key, 32 bytes

    def __post_init__(self) -> None:
        if len(self.sign) != 32 or len(self.kex) != 32:
            raise ConfigError("agent public keys must be 32-byte raw Ed25519 and X25519 keys")

    @property
    def sign_kid(self) -> str:
        return kid_of(self.sign)

    @property
    def kex_kid(self) -> str:
        return kid_of(self.kex)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.sign).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class AgentKeys:
    """An agent's private keys. They never leave the Pi."""

    sign: Ed25519PrivateKey
    kex: X25519PrivateKey

    @classmethod
    def generate(cls) -> AgentKeys:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, sign_pem: bytes, kex_pem: bytes) -> AgentKeys:
        sign, kex = load_private_pem(sign_pem), load_private_pem(kex_pem)
        if not isinstance(sign, Ed25519PrivateKey) or not isinstance(kex, X25519PrivateKey):
            raise ConfigError("agent keys must be an Ed25519 signing key and an X25519 key")
        return cls(sign, kex)

    def sign_pem(self) -> bytes:
        return _pem(self.sign)

    def kex_pem(self) -> bytes:
        return _pem(self.kex)

    def public(self) -> AgentPublicKeys:
        return AgentPublicKeys(sign=_raw_public(self.sign), kex=_raw_public(self.kex))


@dataclass(frozen=True, slots=True)
class ServerPublicKey:
    """The server key an agent encrypts to (from the enrollment bundle or a config push)."""

    kex: bytes  # raw X25519 public key
    sign: bytes  # raw Ed25519 public key (receipts and config are signed with it)

    def __post_init__(self) -> None:
        if len(self.sign) != 32 or len(self.kex) != 32:
            raise ConfigError("server public keys must be 32-byte raw X25519 and Ed25519 keys")

    @property
    def kid(self) -> str:
        return kid_of(self.kex)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.sign).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class ServerKey:
    """One generation of the server's private keys; the server keeps several while rotating."""

    kex: X25519PrivateKey
    sign: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> ServerKey:
        return cls(X25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, kex_pem: bytes, sign_pem: bytes) -> ServerKey:
        kex, sign = load_private_pem(kex_pem), load_private_pem(sign_pem)
        if not isinstance(kex, X25519PrivateKey) or not isinstance(sign, Ed25519PrivateKey):
            raise ConfigError("server keys must be an X25519 key and an Ed25519 signing key")
        return cls(kex, sign)

    def kex_pem(self) -> bytes:
        return _pem(self.kex)

    def sign_pem(self) -> bytes:
        return _pem(self.sign)

    def public(self) -> ServerPublicKey:
        return ServerPublicKey(kex=_raw_public(self.kex), sign=_raw_public(self.sign))

    @property
    def kid(self) -> str:
        return self.public().kid

"""Key material for the envelope: agents sign (Ed25519) and agree keys (X25519); the server agrees
keys (X25519) and signs receipts (Ed25519).

Private keys are generated where they live (an agent's on the Pi) and serialised as unencrypted
PKCS#8 PEM files readable only by their owner (mode 0600). A key id (``kid``) is the first 8 bytes
of the SHA-256 of the raw public key, hex-encoded: stable, derived, and cheap to look up, so the
server can hold several keys at once while it rotates.

The arithmetic is libsodium's, through PyNaCl's low-level bindings: the edge agent seals with these
keys and does not load ``cryptography`` (8 MB resident on a Pi, docs/performance.md). The PEM files
are the ones ``cryptography`` (OpenSSL) writes and reads, byte for byte: RFC 8410's PKCS#8 v1
``PrivateKeyInfo`` of one Ed25519 or X25519 key, a fixed 16-byte DER prefix and the 32 raw bytes.
:func:`load_private_pem` accepts exactly that and nothing else (no encryption, no attributes, no
embedded public key), with a :class:`~rpm_core.errors.ConfigError` that says what it found.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from nacl.bindings import (
    crypto_scalarmult,
    crypto_scalarmult_base,
    crypto_sign,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError
from nacl.exceptions import RuntimeError as SodiumError

from rpm_core.errors import ConfigError

__all__ = [
    "AgentKeys",
    "AgentPublicKeys",
    "Ed25519Key",
    "ServerKey",
    "ServerPublicKey",
    "X25519Key",
    "kid_of",
    "load_private_pem",
    "verify_ed25519",
]

# RFC 8410 section 7: SEQUENCE { INTEGER 0, SEQUENCE { OID }, OCTET STRING { OCTET STRING (32) } }.
_PKCS8_ED25519: Final = bytes.fromhex("302e020100300506032b657004220420")  # OID 1.3.101.112
_PKCS8_X25519: Final = bytes.fromhex("302e020100300506032b656e04220420")  # OID 1.3.101.110
_BEGIN: Final = "-----BEGIN PRIVATE KEY-----"
_END: Final = "-----END PRIVATE KEY-----"


def kid_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).digest()[:8].hex()


def _raw32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{what} is 32 raw bytes")
    return value


class Ed25519Key:
    """An Ed25519 private key (its 32-byte seed, RFC 8032); signs with libsodium."""

    __slots__ = ("_public", "_secret", "_seed")

    def __init__(self, seed: bytes) -> None:
        self._seed = _raw32(seed, "an Ed25519 private key")
        self._public, self._secret = crypto_sign_seed_keypair(self._seed)

    @classmethod
    def generate(cls) -> Ed25519Key:
        return cls(secrets.token_bytes(32))

    def private_bytes_raw(self) -> bytes:
        return self._seed

    def public_bytes_raw(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message`` (deterministic: the same bytes OpenSSL gives)."""
        signature: bytes = crypto_sign(message, self._secret)[:64]
        return signature

    def __repr__(self) -> str:
        return f"Ed25519Key(kid={kid_of(self._public)})"


class X25519Key:
    """An X25519 private key (32 raw bytes, RFC 7748); agrees keys with libsodium.

    :meth:`exchange` remembers its last result: an agent agrees a key with the same server key for
    every envelope (ECDH-SS, static keys on both sides), so the scalar multiplication (70 µs, most
    of a seal's cryptography) runs once per server key instead of once per envelope.
    """

    __slots__ = ("_last", "_private", "_public")

    def __init__(self, private: bytes) -> None:
        self._private = _raw32(private, "an X25519 private key")
        self._public: bytes = crypto_scalarmult_base(self._private)
        self._last: tuple[bytes, bytes] | None = None  # (peer public key, shared secret)

    @classmethod
    def generate(cls) -> X25519Key:
        return cls(secrets.token_bytes(32))

    def private_bytes_raw(self) -> bytes:
        return self._private

    def public_bytes_raw(self) -> bytes:
        return self._public

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret with the raw X25519 public key ``peer_public``; ``ValueError`` when there
        is none (a low-order point gives all zeros, which libsodium and OpenSSL both refuse)."""
        last = self._last
        if last is not None and last[0] == peer_public:
            return last[1]
        try:
            shared: bytes = crypto_scalarmult(self._private, _raw32(peer_public, "an X25519 public key"))
        except SodiumError as exc:
            raise ValueError("no shared secret with this public key (low order point)") from exc
        self._last = (peer_public, shared)
        return shared

    def __repr__(self) -> str:
        return f"X25519Key(kid={kid_of(self._public)})"


def verify_ed25519(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_raw``'s Ed25519 signature of ``message``."""
    if len(signature) != 64:
        return False
    try:
        crypto_sign_open(signature + message, public_raw)
    except BadSignatureError:
        return False
    return True


def _pem(key: Ed25519Key | X25519Key) -> bytes:
    prefix = _PKCS8_ED25519 if isinstance(key, Ed25519Key) else _PKCS8_X25519
    body = base64.b64encode(prefix + key.private_bytes_raw()).decode()
    return f"{_BEGIN}\n{body}\n{_END}\n".encode()  # 48 bytes of DER are one 64-character line


def load_private_pem(data: bytes) -> Ed25519Key | X25519Key:
    """Parse an unencrypted PKCS#8 PEM file of one Ed25519 or X25519 key (as written by
    :meth:`AgentKeys.sign_pem` and friends, or by ``cryptography``/``openssl genpkey``)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ConfigError("not a PEM private key (not ASCII text)") from exc
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("-----BEGIN "):
        raise ConfigError("not a PEM private key")
    if lines[0] == "-----BEGIN ENCRYPTED PRIVATE KEY-----":
        raise ConfigError("encrypted private keys are not supported: the key file must be unencrypted PKCS#8")
    if lines[0] != _BEGIN:
        label = lines[0].removeprefix("-----BEGIN ").removesuffix("-----")
        raise ConfigError(f"expected a PEM 'PRIVATE KEY' (PKCS#8), found {label!r}")
    if len(lines) < 3 or lines[-1] != _END:
        raise ConfigError("the PEM private key has no END line (truncated?)")
    try:
        der = base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("the PEM private key is not valid base64") from exc
    prefix, raw = der[:16], der[16:]
    if len(der) != 48 or prefix not in (_PKCS8_ED25519, _PKCS8_X25519):
        raise ConfigError("unsupported private key: only unencrypted PKCS#8 Ed25519 and X25519 keys (RFC 8410)")
    return Ed25519Key(raw) if prefix == _PKCS8_ED25519 else X25519Key(raw)


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
        return verify_ed25519(self.sign, signature, message)


@dataclass(frozen=True, slots=True)
class AgentKeys:
    """An agent's private keys. They never leave the Pi."""

    sign: Ed25519Key
    kex: X25519Key

    @classmethod
    def generate(cls) -> AgentKeys:
        return cls(Ed25519Key.generate(), X25519Key.generate())

    @classmethod
    def from_pem(cls, sign_pem: bytes, kex_pem: bytes) -> AgentKeys:
        sign, kex = load_private_pem(sign_pem), load_private_pem(kex_pem)
        if not isinstance(sign, Ed25519Key) or not isinstance(kex, X25519Key):
            raise ConfigError("agent keys must be an Ed25519 signing key and an X25519 key")
        return cls(sign, kex)

    def sign_pem(self) -> bytes:
        return _pem(self.sign)

    def kex_pem(self) -> bytes:
        return _pem(self.kex)

    def public(self) -> AgentPublicKeys:
        return AgentPublicKeys(sign=self.sign.public_bytes_raw(), kex=self.kex.public_bytes_raw())


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
        return verify_ed25519(self.sign, signature, message)


@dataclass(frozen=True, slots=True)
class ServerKey:
    """One generation of the server's private keys; the server keeps several while rotating."""

    kex: X25519Key
    sign: Ed25519Key

    @classmethod
    def generate(cls) -> ServerKey:
        return cls(X25519Key.generate(), Ed25519Key.generate())

    @classmethod
    def from_pem(cls, kex_pem: bytes, sign_pem: bytes) -> ServerKey:
        kex, sign = load_private_pem(kex_pem), load_private_pem(sign_pem)
        if not isinstance(kex, X25519Key) or not isinstance(sign, Ed25519Key):
            raise ConfigError("server keys must be an X25519 key and an Ed25519 signing key")
        return cls(kex, sign)

    def kex_pem(self) -> bytes:
        return _pem(self.kex)

    def sign_pem(self) -> bytes:
        return _pem(self.sign)

    def public(self) -> ServerPublicKey:
        return ServerPublicKey(kex=self.kex.public_bytes_raw(), sign=self.sign.public_bytes_raw())

    @property
    def kid(self) -> str:
        return self.public().kid

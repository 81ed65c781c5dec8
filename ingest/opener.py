"""Opening envelopes: the server's side of ``rpm_core.envelope`` (format v1, docs/envelope.md).

:class:`EnvelopeOpener` is the server's keyring for what agents send: the server key generations
it accepts (by key id) and, as its own bounded state, what would otherwise be recomputed for every
envelope:

* the ECDH-SS shared secret per (server key id, agent X25519 key), kept as its HKDF-SHA256
  pseudo-random key (RFC 5869 extract, no salt): static-static ECDH gives the same secret for every
  envelope of one agent to one server key, only the per-message PartyU nonce changes the derived
  content key, so an envelope costs one HMAC (the expand step) rather than a key exchange and two.
  Only registered agents' keys are remembered (a registration, whose sender key is anyone's until
  it verifies, is computed afresh);
* the Ed25519 public keys of the registered agents it has verified signatures with. Signatures are
  verified with libsodium (PyNaCl): 64.5 µs per verification against 128.7 µs with ``cryptography``
  (OpenSSL) on the development machine, the largest single cost of an envelope of one reading;
  libsodium is also the stricter verifier (it refuses small-order keys and ``R`` points and a
  non-canonical ``S``), and Ed25519 signatures are deterministic, so nothing an agent signs verifies
  differently;
* the external AAD per topic;
* the identifiers the readings validator already checked (:class:`ingest.rows.RowsValidator`).

Each cache holds at most ``cache_max`` entries and starts afresh when full. One opener per ingest
worker (``IngestService`` builds it from its key generations); it is used by that worker's thread
only.

There is one way to open an envelope: :meth:`EnvelopeOpener.open` checks the COSE_Encrypt shape
itself (so that garbage never reaches a parser of cwt's), decrypts with our RFC 9052/9053
decryptor (tests/ingest/test_opener_decrypt.py checks it against cwt's own decoder, a test-only
oracle, on valid and tampered envelopes), then verifies the agent's COSE_Sign1. Header labels and
the algorithm and version values must be CBOR integers exactly, a recipient carries exactly a kid,
a PartyU nonce and the sender's static key (never a salt, which cwt would ignore), and the sender
key must be canonical (X25519 ignores the top bit): an envelope has one encoding only.

Errors are :class:`rpm_core.errors.EnvelopeError` subclasses only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cwt.utils import to_recipient_context
from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import VerifyKey

from ingest import untrusted
from ingest.rows import BodyValues, RowsValidator, decode_batch
from rpm_core.enrollment import Registration
from rpm_core.envelope import (
    ALG,
    CHACHA20_POLY1305,
    COSE_ENCRYPT_TAG,
    COSE_SIGN1_TAG,
    ECDH_SS_HKDF_256,
    EDDSA,
    ENVELOPE_VERSION,
    IV,
    KDF_CONTEXT,
    KID,
    MAX_ENVELOPE_BYTES,
    OKP,
    PARTY_U_NONCE,
    STATIC_KEY,
    VERSION_LABEL,
    X25519,
    ReadingBatch,
    external_aad,
)
from rpm_core.errors import (
    BindingMismatch,
    ConfigError,
    ContractError,
    DecryptionFailed,
    MalformedEnvelope,
    SignatureInvalid,
    UnknownKey,
    UnsupportedAlgorithm,
    UnsupportedVersion,
)
from rpm_core.keys import AgentPublicKeys, ServerKey, kid_of
from rpm_core.status import AgentStatus
from rpm_core.topics import Topic

__all__ = ["CACHE_MAX", "EnvelopeOpener"]

CACHE_MAX: Final = 100_000  # entries per cache: about one per agent (two while server keys rotate)
_K = TypeVar("_K")
_V = TypeVar("_V")
_NONCE_BYTES: Final = 32  # the PartyU nonce (_parse_recipient holds every envelope to it)


def _kdf_context_template() -> tuple[bytes, bytes]:
    """The encoded COSE_KDF_Context around the PartyU nonce, from cwt's own ``to_recipient_context``.

    A recipient header holds exactly a kid, the PartyU nonce and the static key (_parse_recipient),
    and of those only the nonce enters the context, so the context of every envelope is these bytes
    with its own 32-byte nonce between them (tests/ingest/test_opener_decrypt.py checks it against
    cwt for random nonces)."""
    marker = bytes(range(0xA0, 0xA0 + _NONCE_BYTES))
    header: dict[str | int, Any] = {KID: b"kid", PARTY_U_NONCE: marker, STATIC_KEY: {}}
    encoded = cbor2.dumps(to_recipient_context(ECDH_SS_HKDF_256, header, KDF_CONTEXT))
    head, sep, tail = encoded.partition(cbor2.dumps(marker))
    if not sep or sep in tail:
        raise AssertionError("the KDF context does not hold the PartyU nonce once")  # cwt changed: fail at import
    return head, tail


_CONTEXT_HEAD, _CONTEXT_TAIL = _kdf_context_template()
_NONCE_PREFIX: Final = cbor2.dumps(bytes(_NONCE_BYTES))[:2]  # byte string of 32: 0x58 0x20
_ZERO_SALT: Final = bytes(32)  # RFC 5869: no salt is HashLen zero bytes


@dataclass(frozen=True, slots=True)
class _Outer:
    recipient_kid: str
    sender_kex: bytes
    recipient_header: dict[str | int, Any]
    protected: bytes = b""
    iv: bytes = b""
    ciphertext: bytes = b""


class EnvelopeOpener:
    """Opens, verifies and decodes what agents publish, with ``server_keys`` (key id -> key: every
    generation still accepted while the server rotates)."""

    def __init__(self, server_keys: Mapping[str, ServerKey], *, cache_max: int = CACHE_MAX) -> None:
        self._server_keys = server_keys
        self._cache_max = cache_max
        self._secrets: dict[tuple[str, bytes], bytes] = {}
        self._agent_keys: dict[bytes, VerifyKey] = {}
        self._aads: dict[Topic, bytes] = {}
        self._rows = RowsValidator()

    # -- what agents send ---------------------------------------------------------------------

    def open(self, data: bytes, *, topic: Topic, agent: AgentPublicKeys) -> bytes:
        """Decrypt and verify an envelope that arrived on ``topic``; return the signed body.

        ``agent`` is the agent's registered public keys: the envelope must be sealed with its X25519
        key and signed with its Ed25519 key.
        """
        aad = self._aad(topic)
        signed, _ = self._decrypt(data, aad, sender_kex=agent.kex)
        return self._verify(signed, aad, agent, registered=True)

    def decode_values(self, body: bytes, *, topic: Topic) -> BodyValues:
        """A verified readings body (:meth:`open`) validated into the row values ingest stores."""
        return self._rows.decode_values(body, topic=topic)

    def open_batch(self, data: bytes, *, topic: Topic, agent: AgentPublicKeys) -> ReadingBatch:
        """Open, verify and validate an envelope from ``.../up/readings`` into readings."""
        return decode_batch(self.open(data, topic=topic, agent=agent), topic=topic)

    def open_status(self, data: bytes, *, topic: Topic, agent: AgentPublicKeys) -> AgentStatus:
        """Open, verify and validate an agent's status from ``.../up/status``."""
        doc = untrusted.loads(self.open(data, topic=topic, agent=agent), "status body")
        if not isinstance(doc, dict):
            raise MalformedEnvelope("status body is not a map")
        if doc.pop("v", None) != ENVELOPE_VERSION:
            raise UnsupportedVersion(doc.get("v"))
        if doc.get("org") != topic.org or doc.get("agent") != topic.agent:
            raise BindingMismatch("agent")
        try:
            return AgentStatus.from_doc(doc)
        except ContractError as exc:
            raise MalformedEnvelope("invalid status") from exc

    def open_registration(self, data: bytes, *, topic: Topic) -> Registration:
        """Open a registration; it proves possession of the keys it announces. The caller checks the
        token (``rpm_core.enrollment``: the registration is sealed with the X25519 key and signed
        with the Ed25519 key its body carries)."""
        aad = self._aad(topic)
        signed, sender_kex = self._decrypt(data, aad, sender_kex=None)
        doc = untrusted.loads(_sign1_parts(signed)[2], "registration body")
        if not isinstance(doc, dict) or doc.get("type") != "register":
            raise MalformedEnvelope("not a registration")
        if doc.get("v") != ENVELOPE_VERSION:
            raise UnsupportedVersion(doc.get("v"))
        sign, kex, token, version = doc.get("sign"), doc.get("kex"), doc.get("token"), doc.get("agent_version", "")
        if not (
            isinstance(sign, bytes) and isinstance(kex, bytes) and isinstance(token, str) and isinstance(version, str)
        ):
            raise MalformedEnvelope("bad registration fields")
        try:
            keys = AgentPublicKeys(sign=sign, kex=kex)
        except ConfigError as exc:
            raise MalformedEnvelope("bad public keys") from exc
        if kex != sender_kex:
            raise BindingMismatch("key agreement key")
        self._verify(signed, aad, keys, registered=False)
        if doc.get("org") != topic.org or doc.get("agent") != topic.agent:
            raise BindingMismatch("agent")
        return Registration(topic.org, topic.agent, keys, token, version[:64])

    # -- the two COSE layers ------------------------------------------------------------------

    def _decrypt(self, data: bytes, aad: bytes, *, sender_kex: bytes | None) -> tuple[bytes, bytes]:
        """The outer layer: the (still unverified) COSE_Sign1 and the sender's X25519 key.

        ``sender_kex`` is the agent's registered key agreement key; None accepts any sender (the
        registration, whose signature is then checked against the keys in its body).
        """
        outer = _parse_outer(data)
        server = self._server_keys.get(outer.recipient_kid)
        if server is None:
            raise UnknownKey(outer.recipient_kid)
        if sender_kex is not None and outer.sender_kex != sender_kex:
            raise UnknownKey(kid_of(outer.sender_kex))
        if sender_kex is None:
            prk = _extract(_exchange(server, outer.sender_kex))
        else:
            prk = self._shared_secret(outer.recipient_kid, server, outer.sender_kex)
        return _open_aead(outer, prk, aad), outer.sender_kex

    def _verify(self, signed: bytes, aad: bytes, agent: AgentPublicKeys, *, registered: bool) -> bytes:
        """The agent's COSE_Sign1, bound to the same external AAD; return its payload. The key of a
        ``registered`` agent is remembered, a registering one's is not."""
        v = _sign1_parts(signed)
        kid = v[1].get(KID)
        if kid != agent.sign_kid.encode():
            raise UnknownKey(kid.decode("ascii", "replace") if isinstance(kid, bytes) else "?")
        protected = untrusted.loads(v[0], "signature header") if v[0] else {}
        if not isinstance(protected, dict) or not untrusted.is_int(protected.get(ALG), EDDSA):
            raise UnsupportedAlgorithm(protected.get(ALG) if isinstance(protected, dict) else None)
        key = self._agent_key(agent.sign) if registered else VerifyKey(agent.sign)
        try:
            key.verify(cbor2.dumps(["Signature1", v[0], aad, v[2]]), v[3])
        except (BadSignatureError, NaclValueError):  # NaclValueError: not a 64-byte signature
            raise SignatureInvalid from None
        body: bytes = v[2]
        return body

    # -- the caches ---------------------------------------------------------------------------

    def _aad(self, topic: Topic) -> bytes:
        aad = self._aads.get(topic)
        if aad is None:
            aad = self._remember(self._aads, topic, external_aad(topic))
        return aad

    def _shared_secret(self, server_kid: str, server: ServerKey, sender_kex: bytes) -> bytes:
        """The HKDF pseudo-random key of the agent's ECDH-SS shared secret with ``server``."""
        key = (server_kid, sender_kex)
        prk = self._secrets.get(key)
        if prk is None:
            prk = self._remember(self._secrets, key, _extract(_exchange(server, sender_kex)))
        return prk

    def _agent_key(self, raw: bytes) -> VerifyKey:
        key = self._agent_keys.get(raw)
        if key is None:
            key = self._remember(self._agent_keys, raw, VerifyKey(raw))
        return key

    def _remember(self, cache: dict[_K, _V], key: _K, value: _V) -> _V:
        if len(cache) >= self._cache_max:
            cache.clear()
        cache[key] = value
        return value


def _exchange(server: ServerKey, sender_kex: bytes) -> bytes:
    try:
        return server.kex.exchange(sender_kex)
    except ValueError as exc:  # e.g. a low-order point: no shared secret
        raise DecryptionFailed from exc


def _extract(z: bytes) -> bytes:
    """HKDF-SHA256 extract (RFC 5869 section 2.2) without salt: the pseudo-random key of ``z``."""
    return hmac.digest(_ZERO_SALT, z, hashlib.sha256)


def _open_aead(outer: _Outer, prk: bytes, aad: bytes) -> bytes:
    """RFC 9052/9053 COSE_Encrypt with one ECDH-SS + HKDF-256 recipient and ChaCha20/Poly1305.

    The same computation as ``cwt``'s decoder (the KDF context is cwt's own ``to_recipient_context``,
    see :func:`_kdf_context_template`), minus its per-message key objects, from ``prk``
    (:func:`_extract` of the shared secret). The content key is HKDF's expand step: 32 bytes are
    one SHA-256 block, T(1) = HMAC(prk, context || 0x01) (RFC 5869 section 2.3).
    """
    nonce = outer.recipient_header[PARTY_U_NONCE]
    context = _CONTEXT_HEAD + _NONCE_PREFIX + nonce + _CONTEXT_TAIL
    cek = hmac.digest(prk, context + b"\x01", hashlib.sha256)
    try:
        return ChaCha20Poly1305(cek).decrypt(outer.iv, outer.ciphertext, cbor2.dumps(["Encrypt", outer.protected, aad]))
    except InvalidTag as exc:
        raise DecryptionFailed from exc


def _parse_outer(data: bytes) -> _Outer:
    """Check the COSE_Encrypt shape ourselves so that garbage never reaches cwt's parser."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise MalformedEnvelope("too large")
    msg = untrusted.loads(data, "envelope")
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != COSE_ENCRYPT_TAG:
        raise MalformedEnvelope("not a COSE_Encrypt message")
    v = msg.value
    if not (isinstance(v, list) and len(v) == 4 and isinstance(v[0], bytes) and isinstance(v[1], dict)):
        raise MalformedEnvelope("bad COSE_Encrypt structure")
    if not (isinstance(v[2], bytes) and isinstance(v[3], list) and len(v[3]) == 1):
        raise MalformedEnvelope("expected one recipient")
    protected = untrusted.loads(v[0], "protected header")
    if not isinstance(protected, dict):
        raise MalformedEnvelope("bad protected header")
    version = protected.get(VERSION_LABEL)
    if not untrusted.is_int(version, ENVELOPE_VERSION):
        raise UnsupportedVersion(version)
    if not untrusted.is_int(protected.get(ALG), CHACHA20_POLY1305):
        raise UnsupportedAlgorithm(protected.get(ALG))
    iv = v[1].get(IV)
    if not isinstance(iv, bytes) or len(iv) != 12:
        raise MalformedEnvelope("bad nonce")
    rec = _parse_recipient(v[3][0])
    return _Outer(rec.recipient_kid, rec.sender_kex, rec.recipient_header, v[0], iv, v[2])


def _parse_recipient(rec: object) -> _Outer:
    if not (isinstance(rec, list) and len(rec) == 3 and isinstance(rec[0], bytes) and isinstance(rec[1], dict)):
        raise MalformedEnvelope("bad recipient structure")
    if rec[2] != b"":  # direct key agreement: the recipient carries no wrapped key
        raise MalformedEnvelope("unexpected recipient ciphertext")
    r_protected = untrusted.loads(rec[0], "recipient header") if rec[0] else {}
    if not isinstance(r_protected, dict) or not untrusted.is_int(r_protected.get(ALG), ECDH_SS_HKDF_256):
        raise UnsupportedAlgorithm(r_protected.get(ALG) if isinstance(r_protected, dict) else None)
    header = rec[1]
    if not (untrusted.int_keys(r_protected) and untrusted.int_keys(header)):
        # true or 4.0 for a label finds the same entry: neither header would be one encoding only.
        raise MalformedEnvelope("recipient header labels are not integers")
    if set(header) != {KID, PARTY_U_NONCE, STATIC_KEY}:
        # Notably a salt (-20): cwt would ignore it, leaving an unauthenticated, malleable header.
        raise MalformedEnvelope("unexpected recipient header parameters")
    kid, nonce, static = header[KID], header[PARTY_U_NONCE], header[STATIC_KEY]
    if not isinstance(kid, bytes) or not isinstance(nonce, bytes) or len(nonce) != 32:
        raise MalformedEnvelope("bad recipient kid or PartyU nonce")
    if not (
        isinstance(static, dict) and untrusted.is_int(static.get(1), OKP) and untrusted.is_int(static.get(-1), X25519)
    ):
        raise UnsupportedAlgorithm(static.get(-1) if isinstance(static, dict) else None)
    sender = static.get(-2)
    if (
        not isinstance(sender, bytes)
        or len(sender) != 32
        or set(static) - {1, -1, -2, 3}
        or not untrusted.int_keys(static)
    ):
        raise MalformedEnvelope("bad sender static key")
    if sender[31] & 0x80:
        # X25519 ignores the top bit (RFC 7748), so the same key had two encodings; ours never sets it.
        raise MalformedEnvelope("non-canonical sender static key")
    try:
        return _Outer(recipient_kid=kid.decode("ascii"), sender_kex=sender, recipient_header=header)
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope("bad recipient kid") from exc


def _sign1_parts(signed: bytes) -> list[Any]:
    msg = untrusted.loads(signed, "inner message")
    v = msg.value if isinstance(msg, cbor2.CBORTag) and msg.tag == COSE_SIGN1_TAG else None
    if not (isinstance(v, list) and len(v) == 4 and isinstance(v[0], bytes) and isinstance(v[1], dict)):
        raise MalformedEnvelope("inner message is not a COSE_Sign1")
    if not (isinstance(v[2], bytes) and isinstance(v[3], bytes)):
        raise MalformedEnvelope("inner message is not a COSE_Sign1")
    return v

"""The envelope: how a batch of readings travels from an agent to the server (format v1).

Standard COSE (RFC 9052/9053) through ``cwt``, sign-then-encrypt::

    COSE_Encrypt (tag 96)
      protected   {alg: ChaCha20/Poly1305 (24), vigil-v (-65537): 1}
      unprotected {iv (5): 12-byte nonce}
      ciphertext  = AEAD(COSE_Sign1 bytes)
      recipients  [[ protected {alg: ECDH-SS + HKDF-256 (-27)},
                     unprotected {kid (4): server key id,
                                  PartyU nonce (-22): 32 random bytes,
                                  static key (-2): the agent's X25519 public key},
                     h'' ]]
    COSE_Sign1 (tag 18)
      protected   {alg: EdDSA (-8)}
      unprotected {kid (4): the agent's signing key id}
      payload     = body (CBOR map, below)
      signature   = Ed25519 by the agent

Both layers use the same external AAD, ``CBOR ["vigil", 1, topic, agent_id]``: an envelope moved
to another topic or claimed by another agent fails to decrypt. The body repeats org and agent and
they must match the topic. Replay and duplicates are handled by the per-reading agent sequence
number, which together with the measured time is the dedup key at ingest.

Why ECDH-SS and not ECDH-ES: cwt 3.3.0 cannot do ECDH-ES with X25519 (it builds the ephemeral
OKP key without a body) and its HPKE rejects X25519 keys loaded from PEM. With static keys on both
sides a fresh content key per message must come from somewhere else: RFC 9053 offers a salt (-20)
or a PartyU nonce (-22). cwt 3.3.0 writes the salt header but never feeds it to HKDF (measured:
flipping any salt byte still decrypts, and every message of an agent used the same key), so v1 uses
a random 32-byte PartyU nonce, which enters the KDF context, and rejects a salt header. ECDH-SS gives
up forward secrecy against a later theft of the agent's X25519 key; the Ed25519 signature does not
depend on it. See docs/envelope.md for the body layout and test vectors.

Errors raised while opening are :class:`rpm_core.errors.EnvelopeError` subclasses only.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cwt import COSE, COSEKey, Recipient
from cwt.cose_key_interface import COSEKeyInterface
from cwt.exceptions import CWTError
from cwt.utils import to_recipient_context
from pydantic import ValidationError

from rpm_core.errors import (
    BindingMismatch,
    DecryptionFailed,
    MalformedEnvelope,
    SignatureInvalid,
    UnknownKey,
    UnsupportedAlgorithm,
    UnsupportedVersion,
)
from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentKeys, AgentPublicKeys, ServerKey, ServerPublicKey, kid_of
from rpm_core.reading import Reading, SeqRange
from rpm_core.rows import (
    MAX_ROWS,
    RowValues,
    declared_sequences,
    first_error,
    from_micros,
    gap_from_row,
    micros,
    reading_from_row,
    rows_values,
)
from rpm_core.topics import Topic

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_ENVELOPE_BYTES",
    "MAX_READINGS",
    "BodyValues",
    "ReadingBatch",
    "declared_sequences",
    "decode_batch",
    "decode_values",
    "decrypt_envelope",
    "external_aad",
    "open_batch",
    "open_envelope",
    "seal_batch",
    "seal_envelope",
    "signed_payload_unverified",
    "verify_signed",
]

ENVELOPE_VERSION: Final = 1
MAX_ENVELOPE_BYTES: Final = 256 * 1024
MAX_READINGS: Final = MAX_ROWS

# COSE labels and algorithm ids (RFC 9052/9053 and the IANA registry).
_ALG, _KID, _IV = 1, 4, 5
_STATIC_KEY, _SALT, _PARTY_U_NONCE = -2, -20, -22
_VERSION_LABEL: Final = -65537  # private-use header label: the Vigil envelope version
_CHACHA20_POLY1305, _ECDH_SS_HKDF_256, _EDDSA = 24, -27, -8
_OKP, _X25519, _ED25519 = 1, 4, 6
_CONTEXT: Final = {"alg": "ChaCha20/Poly1305"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_cose = COSE.new()


@functools.lru_cache(maxsize=65536)
def external_aad(topic: Topic) -> bytes:
    """The associated data both COSE layers authenticate: version, topic and agent id.

    Memoised: a server opens thousands of envelopes per second from a bounded set of topics.
    """
    return cbor2.dumps(["vigil", ENVELOPE_VERSION, str(topic), str(topic.agent)])


def _okp(kty_crv: int, alg: int, public: bytes, private: bytes | None, kid: str) -> COSEKeyInterface:
    params: dict[int, Any] = {1: _OKP, 3: alg, -1: kty_crv, -2: public, 2: kid.encode()}
    if private is not None:
        params[-4] = private
    return COSEKey.new(params)


def _raw_private(key: Any) -> bytes:
    raw: bytes = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    return raw


# -- the generic layer: bytes in, bytes out -------------------------------------------------------


def seal_envelope(
    body: bytes,
    *,
    topic: Topic,
    agent: AgentKeys,
    server: ServerPublicKey,
    nonce: bytes | None = None,
    party_u_nonce: bytes | None = None,
) -> bytes:
    """Sign ``body`` with the agent's key and encrypt it to ``server``.

    ``nonce`` (12 bytes) and ``party_u_nonce`` (32 bytes) exist only to reproduce the documented
    test vectors; production callers leave them unset so both are fresh random values.
    """
    aad = external_aad(topic)
    pub = agent.public()
    sign_key = _okp(_ED25519, _EDDSA, pub.sign, _raw_private(agent.sign), pub.sign_kid)
    signed = _cose.encode_and_sign(
        body, sign_key, protected={_ALG: _EDDSA}, unprotected={_KID: pub.sign_kid.encode()}, external_aad=aad
    )
    sender = _okp(_X25519, _ECDH_SS_HKDF_256, pub.kex, _raw_private(agent.kex), pub.kex_kid)
    recipient_pub = _okp(_X25519, _ECDH_SS_HKDF_256, server.kex, None, server.kid)
    r_unprotected: dict[int, Any] = {
        _KID: server.kid.encode(),
        _PARTY_U_NONCE: secrets.token_bytes(32) if party_u_nonce is None else party_u_nonce,
    }
    recipient = Recipient.new(
        protected={_ALG: _ECDH_SS_HKDF_256},
        unprotected=r_unprotected,
        sender_key=sender,
        recipient_key=recipient_pub,
        context=_CONTEXT,
    )
    unprotected: dict[int, Any] = {} if nonce is None else {_IV: nonce}
    sealed: bytes = _cose.encode_and_encrypt(
        bytes(signed),
        protected={_ALG: _CHACHA20_POLY1305, _VERSION_LABEL: ENVELOPE_VERSION},
        unprotected=unprotected,
        recipients=[recipient],
        external_aad=aad,
    )
    return sealed


@dataclass(frozen=True, slots=True)
class _Outer:
    recipient_kid: str
    sender_kex: bytes
    recipient_header: dict[str | int, Any]
    protected: bytes = b""
    iv: bytes = b""
    ciphertext: bytes = b""


def _is_int(value: object, expected: int) -> bool:
    """The CBOR integer ``expected`` exactly: True, 1.0 and cbor2's simple(1) compare equal to 1,
    and an unprotected header accepted that way was malleable (cwt refuses them)."""
    return type(value) is int and value == expected


def _int_keys(header: dict[Any, Any]) -> bool:
    return all(type(k) is int for k in header)


def _cbor(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # any decoder failure on hostile bytes (see rpm_core.errors)
        raise MalformedEnvelope(f"{what} is not CBOR") from exc


def _parse_outer(data: bytes) -> _Outer:
    """Check the COSE_Encrypt shape ourselves so that garbage never reaches cwt's parser."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise MalformedEnvelope("too large")
    msg = _cbor(data, "envelope")
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != 96:
        raise MalformedEnvelope("not a COSE_Encrypt message")
    v = msg.value
    if not (isinstance(v, list) and len(v) == 4 and isinstance(v[0], bytes) and isinstance(v[1], dict)):
        raise MalformedEnvelope("bad COSE_Encrypt structure")
    if not (isinstance(v[2], bytes) and isinstance(v[3], list) and len(v[3]) == 1):
        raise MalformedEnvelope("expected one recipient")
    protected = _cbor(v[0], "protected header")
    if not isinstance(protected, dict):
        raise MalformedEnvelope("bad protected header")
    version = protected.get(_VERSION_LABEL)
    if not _is_int(version, ENVELOPE_VERSION):
        raise UnsupportedVersion(version)
    if not _is_int(protected.get(_ALG), _CHACHA20_POLY1305):
        raise UnsupportedAlgorithm(protected.get(_ALG))
    iv = v[1].get(_IV)
    if not isinstance(iv, bytes) or len(iv) != 12:
        raise MalformedEnvelope("bad nonce")
    rec = _parse_recipient(v[3][0])
    return _Outer(rec.recipient_kid, rec.sender_kex, rec.recipient_header, v[0], iv, v[2])


def _parse_recipient(rec: object) -> _Outer:
    if not (isinstance(rec, list) and len(rec) == 3 and isinstance(rec[0], bytes) and isinstance(rec[1], dict)):
        raise MalformedEnvelope("bad recipient structure")
    if rec[2] != b"":  # direct key agreement: the recipient carries no wrapped key
        raise MalformedEnvelope("unexpected recipient ciphertext")
    r_protected = _cbor(rec[0], "recipient header") if rec[0] else {}
    if not isinstance(r_protected, dict) or not _is_int(r_protected.get(_ALG), _ECDH_SS_HKDF_256):
        raise UnsupportedAlgorithm(r_protected.get(_ALG) if isinstance(r_protected, dict) else None)
    header = rec[1]
    if not (_int_keys(r_protected) and _int_keys(header)):
        # true or 4.0 for a label finds the same entry: neither header would be one encoding only.
        raise MalformedEnvelope("recipient header labels are not integers")
    if set(header) != {_KID, _PARTY_U_NONCE, _STATIC_KEY}:
        # Notably a salt (-20): cwt would ignore it, leaving an unauthenticated, malleable header.
        raise MalformedEnvelope("unexpected recipient header parameters")
    kid, nonce, static = header[_KID], header[_PARTY_U_NONCE], header[_STATIC_KEY]
    if not isinstance(kid, bytes) or not isinstance(nonce, bytes) or len(nonce) != 32:
        raise MalformedEnvelope("bad recipient kid or PartyU nonce")
    if not (isinstance(static, dict) and _is_int(static.get(1), _OKP) and _is_int(static.get(-1), _X25519)):
        raise UnsupportedAlgorithm(static.get(-1) if isinstance(static, dict) else None)
    sender = static.get(-2)
    if not isinstance(sender, bytes) or len(sender) != 32 or set(static) - {1, -1, -2, 3} or not _int_keys(static):
        raise MalformedEnvelope("bad sender static key")
    if sender[31] & 0x80:
        # X25519 ignores the top bit (RFC 7748), so the same key had two encodings; ours never sets it.
        raise MalformedEnvelope("non-canonical sender static key")
    try:
        return _Outer(recipient_kid=kid.decode("ascii"), sender_kex=sender, recipient_header=header)
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope("bad recipient kid") from exc


def decrypt_envelope(
    data: bytes,
    *,
    topic: Topic,
    server_keys: Mapping[str, ServerKey],
    sender_kex: bytes | None,
) -> tuple[bytes, bytes]:
    """Decrypt the outer layer; return the (still unverified) COSE_Sign1 and the sender's X25519 key.

    ``sender_kex`` is the agent's registered key agreement key; None accepts any sender and is only
    for the enrollment registration, whose signature is then checked against keys in the body.
    """
    outer = _parse_outer(data)
    server = server_keys.get(outer.recipient_kid)
    if server is None:
        raise UnknownKey(outer.recipient_kid)
    if sender_kex is not None and outer.sender_kex != sender_kex:
        raise UnknownKey(kid_of(outer.sender_kex))
    return _decrypt(outer, server, external_aad(topic)), outer.sender_kex


# Static-static ECDH gives the same shared secret for every envelope of one agent to one server
# key; only the per-message PartyU nonce changes the derived content key. Remember the secret.
_SHARED: dict[tuple[str, bytes], bytes] = {}
_SHARED_MAX: Final = 100_000


def _shared_secret(server_kid: str, server: ServerKey, sender_kex: bytes) -> bytes:
    key = (server_kid, sender_kex)
    z = _SHARED.get(key)
    if z is None:
        try:
            z = server.kex.exchange(X25519PublicKey.from_public_bytes(sender_kex))
        except ValueError as exc:  # e.g. a low-order point: no shared secret
            raise DecryptionFailed from exc
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[key] = z
    return z


def _decrypt(outer: _Outer, server: ServerKey, aad: bytes) -> bytes:
    """RFC 9052/9053 COSE_Encrypt with one ECDH-SS + HKDF-256 recipient and ChaCha20/Poly1305.

    The same computation as ``cwt``'s decoder (the KDF context comes from cwt's own
    ``to_recipient_context``; tests/rpm_core/test_envelope_decrypt.py checks both agree on valid
    and tampered envelopes), minus its per-message key objects, with the shared secret cached.
    """
    context = cbor2.dumps(to_recipient_context(_ECDH_SS_HKDF_256, outer.recipient_header, _CONTEXT))
    cek = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(
        _shared_secret(outer.recipient_kid, server, outer.sender_kex)
    )
    try:
        return ChaCha20Poly1305(cek).decrypt(outer.iv, outer.ciphertext, cbor2.dumps(["Encrypt", outer.protected, aad]))
    except InvalidTag as exc:
        raise DecryptionFailed from exc


def decrypt_with_cwt(data: bytes, *, topic: Topic, server: ServerKey) -> bytes:
    """The reference decoder (cwt), kept for the equivalence test of :func:`_decrypt`."""
    spub = server.public()
    server_cose = _okp(_X25519, _ECDH_SS_HKDF_256, spub.kex, _raw_private(server.kex), spub.kid)
    try:
        signed: bytes = _cose.decode(data, keys=[server_cose], context=_CONTEXT, external_aad=external_aad(topic))
    except (CWTError, ValueError, TypeError, KeyError) as exc:
        raise DecryptionFailed from exc
    return signed


def open_envelope(
    data: bytes,
    *,
    topic: Topic,
    server_keys: Mapping[str, ServerKey],
    agent: AgentPublicKeys,
) -> bytes:
    """Decrypt and verify an envelope that arrived on ``topic``; return the signed body.

    ``server_keys`` maps key ids to the server keys currently accepted (rotation keeps the previous
    generation here for a while); ``agent`` is the agent's registered public keys.
    """
    signed, _ = decrypt_envelope(data, topic=topic, server_keys=server_keys, sender_kex=agent.kex)
    return verify_signed(signed, topic=topic, agent=agent)


def signed_payload_unverified(signed: bytes) -> bytes:
    """The payload of a COSE_Sign1 before verification (enrollment reads the key it must verify with)."""
    payload: bytes = _sign1_parts(signed)[2]
    return payload


def _sign1_parts(signed: bytes) -> list[Any]:
    msg = _cbor(signed, "inner message")
    v = msg.value if isinstance(msg, cbor2.CBORTag) and msg.tag == 18 else None
    if not (isinstance(v, list) and len(v) == 4 and isinstance(v[0], bytes) and isinstance(v[1], dict)):
        raise MalformedEnvelope("inner message is not a COSE_Sign1")
    if not (isinstance(v[2], bytes) and isinstance(v[3], bytes)):
        raise MalformedEnvelope("inner message is not a COSE_Sign1")
    return v


def verify_signed(signed: bytes, *, topic: Topic, agent: AgentPublicKeys) -> bytes:
    """Verify the agent's COSE_Sign1 (bound to ``topic``); return its payload."""
    return _verify_signed(signed, aad=external_aad(topic), agent=agent)


def _verify_signed(signed: bytes, *, aad: bytes, agent: AgentPublicKeys) -> bytes:
    v = _sign1_parts(signed)
    kid = v[1].get(_KID)
    if kid != agent.sign_kid.encode():
        raise UnknownKey(kid.decode("ascii", "replace") if isinstance(kid, bytes) else "?")
    protected = _cbor(v[0], "signature header") if v[0] else {}
    if not isinstance(protected, dict) or not _is_int(protected.get(_ALG), _EDDSA):
        raise UnsupportedAlgorithm(protected.get(_ALG) if isinstance(protected, dict) else None)
    to_be_signed = cbor2.dumps(["Signature1", v[0], aad, v[2]])
    if not agent.verify(v[3], to_be_signed):
        raise SignatureInvalid
    body: bytes = v[2]
    return body


# -- the readings body ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """What one envelope on ``.../up/readings`` carries."""

    org: OrgId
    agent: AgentId
    sent_at: datetime
    readings: tuple[Reading, ...]
    gaps: tuple[SeqRange, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.readings) > MAX_READINGS:
            raise ValueError(f"at most {MAX_READINGS} readings per envelope")
        if any(r.agent_id != self.agent for r in self.readings):
            raise ValueError("every reading in a batch belongs to the batch's agent")


def encode_batch(batch: ReadingBatch) -> bytes:
    body = {
        "v": ENVELOPE_VERSION,
        "org": batch.org,
        "agent": batch.agent,
        "sent": micros(batch.sent_at),
        "r": [
            [r.seq, r.device_id, r.metric, r.value, micros(r.measured_at), r.device_time, sorted(r.flags)]
            for r in batch.readings
        ],
        "gaps": [[g.first, g.last] for g in batch.gaps],
    }
    return cbor2.dumps(body, canonical=True)


def _body(body: bytes, topic: Topic) -> tuple[list[Any], list[Any], dict[Any, Any]]:
    """The structural checks of a readings body: the rows, the gaps and the whole map."""
    doc = _cbor(body, "body")
    if not isinstance(doc, dict):
        raise MalformedEnvelope("body is not a map")
    if not _is_int(doc.get("v"), ENVELOPE_VERSION):
        raise UnsupportedVersion(doc.get("v"))
    if doc.get("org") != topic.org:
        raise BindingMismatch("organisation")
    if doc.get("agent") != topic.agent:
        raise BindingMismatch("agent")
    rows, gaps = doc.get("r"), doc.get("gaps", [])
    if not isinstance(rows, list) or not isinstance(gaps, list) or len(rows) > MAX_READINGS:
        raise MalformedEnvelope("bad readings list")
    return rows, gaps, doc


def decode_batch(body: bytes, *, topic: Topic) -> ReadingBatch:
    """Parse and validate a readings body; org and agent must match ``topic``.

    Raises :class:`MalformedEnvelope` (reason ``malformed``) for shape errors and for readings that
    violate the contract (unknown metric, implausible value, naive or absurd time).
    """
    rows, gaps, doc = _body(body, topic)
    try:
        readings = tuple(reading_from_row(topic.agent, row) for row in rows)
        gap_ranges = tuple(gap_from_row(g) for g in gaps[:MAX_READINGS])
    except ValidationError as exc:
        raise MalformedEnvelope(f"invalid reading ({first_error(exc)})") from exc
    return ReadingBatch(topic.org, topic.agent, from_micros(doc.get("sent")), readings, gap_ranges)


@dataclass(frozen=True, slots=True)
class BodyValues:
    """A validated readings body as plain values (:func:`decode_values`): what ingest stores."""

    sent_at: datetime
    rows: list[RowValues]
    gaps: tuple[SeqRange, ...]


def decode_values(body: bytes, *, topic: Topic) -> BodyValues:
    """:func:`decode_batch` without building a :class:`Reading` per row: the same checks in the
    same order, the same errors (``rpm_core.rows.rows_values``), plain tuples out."""
    rows, gaps, doc = _body(body, topic)
    try:
        values = rows_values(topic.agent, rows)
        gap_ranges = tuple(gap_from_row(g) for g in gaps[:MAX_READINGS])
    except ValidationError as exc:
        raise MalformedEnvelope(f"invalid reading ({first_error(exc)})") from exc
    return BodyValues(from_micros(doc.get("sent")), values, gap_ranges)


def seal_batch(
    batch: ReadingBatch,
    *,
    agent: AgentKeys,
    server: ServerPublicKey,
    nonce: bytes | None = None,
    party_u_nonce: bytes | None = None,
) -> tuple[Topic, bytes]:
    """Seal ``batch`` for its readings topic; returns the topic to publish on and the bytes."""
    topic = Topic.readings(batch.org, batch.agent)
    return topic, seal_envelope(
        encode_batch(batch), topic=topic, agent=agent, server=server, nonce=nonce, party_u_nonce=party_u_nonce
    )


def open_batch(
    data: bytes,
    *,
    topic: Topic,
    server_keys: Mapping[str, ServerKey],
    agent: AgentPublicKeys,
) -> ReadingBatch:
    """Open, verify and validate an envelope from ``.../up/readings``."""
    return decode_batch(open_envelope(data, topic=topic, server_keys=server_keys, agent=agent), topic=topic)


def batch_of(
    org: OrgId, agent: AgentId, readings: Sequence[Reading], *, sent_at: datetime, gaps: Sequence[SeqRange] = ()
) -> ReadingBatch:
    return ReadingBatch(org, agent, sent_at, tuple(readings), tuple(gaps))

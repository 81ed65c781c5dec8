"""The envelope: how a batch of readings travels from an agent to the server (format v1).

Standard COSE (RFC 9052/9053), sign-then-encrypt::

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

This module is what both sides need: the format's constants and the sealing that agents (and
tests) do. Sealing writes the COSE structures itself with ``cbor2`` and libsodium through PyNaCl's
bindings (Ed25519, X25519, ChaCha20/Poly1305 IETF; HKDF-SHA256 from ``hmac``): the agent loads
neither ``cwt``, a COSE library of 2.5 MB resident on a Pi for two fixed structures, nor
``cryptography`` (8 MB, docs/performance.md). The v1 format was first produced with
cwt, and its output is the reference: the published vectors match byte for byte, and
``tests/rpm_core/test_envelope_cwt.py`` seals random bodies, keys and nonces both ways and compares
the bytes, and opens ours with cwt's decoder. Opening an envelope is the server's alone and lives
in ``ingest.opener``, which reads the labels and algorithm ids below; it raises
:class:`rpm_core.errors.EnvelopeError` subclasses only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import cbor2
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt

from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentKeys, Ed25519Key, ServerPublicKey
from rpm_core.reading import Reading, SeqRange
from rpm_core.topics import Topic

__all__ = [
    "ALG",
    "CHACHA20_POLY1305",
    "COSE_ENCRYPT_TAG",
    "COSE_SIGN1_TAG",
    "ECDH_SS_HKDF_256",
    "EDDSA",
    "ENVELOPE_VERSION",
    "IV",
    "KDF_CONTEXT",
    "KID",
    "MAX_ENVELOPE_BYTES",
    "MAX_READINGS",
    "OKP",
    "PARTY_U_NONCE",
    "STATIC_KEY",
    "VERSION_LABEL",
    "X25519",
    "ReadingBatch",
    "content_key",
    "encode_batch",
    "external_aad",
    "kdf_context",
    "micros",
    "seal_batch",
    "seal_envelope",
]

ENVELOPE_VERSION: Final = 1
MAX_ENVELOPE_BYTES: Final = 256 * 1024
MAX_READINGS: Final = 1000  # rows (and gaps) per body

# COSE labels and algorithm ids (RFC 9052/9053 and the IANA registry): what the sealer below writes
# and what the server's opener (ingest.opener) accepts, nothing else.
ALG: Final = 1
KID: Final = 4
IV: Final = 5
STATIC_KEY: Final = -2
PARTY_U_NONCE: Final = -22
VERSION_LABEL: Final = -65537  # private-use header label: the Vigil envelope version
CHACHA20_POLY1305: Final = 24
ECDH_SS_HKDF_256: Final = -27
EDDSA: Final = -8
OKP: Final = 1  # COSE_Key kty
X25519: Final = 4  # COSE_Key crv
COSE_ENCRYPT_TAG: Final = 96
COSE_SIGN1_TAG: Final = 18
# The content algorithm in cwt's terms (the server's opener and the tests build the COSE_KDF_Context
# with cwt from it; the agent's sealer writes the same bytes itself: kdf_context).
KDF_CONTEXT: Final = {"alg": "ChaCha20/Poly1305"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# The protected headers, encoded once: bstr-wrapped maps (RFC 9052 section 3).
_SIGN_PROTECTED: Final = cbor2.dumps({ALG: EDDSA})
_ENCRYPT_PROTECTED: Final = cbor2.dumps({ALG: CHACHA20_POLY1305, VERSION_LABEL: ENVELOPE_VERSION})
_RECIPIENT_PROTECTED: Final = cbor2.dumps({ALG: ECDH_SS_HKDF_256})
_ZERO_SALT: Final = bytes(32)  # RFC 5869: no salt is HashLen zero bytes


def external_aad(topic: Topic) -> bytes:
    """The associated data both COSE layers authenticate: version, topic and agent id."""
    return cbor2.dumps(["vigil", ENVELOPE_VERSION, str(topic), str(topic.agent)])


def micros(t: datetime) -> int:
    """Microseconds since 1970-01-01T00:00Z: how the body carries times."""
    return (t - _EPOCH) // timedelta(microseconds=1)


def _sign1(body: bytes, *, key: Ed25519Key, kid: str, aad: bytes) -> bytes:
    """COSE_Sign1 (RFC 9052 section 4.2): Ed25519 over ``["Signature1", protected, aad, payload]``."""
    signature = key.sign(cbor2.dumps(["Signature1", _SIGN_PROTECTED, aad, body]))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [_SIGN_PROTECTED, {KID: kid.encode()}, body, signature]))


def kdf_context(party_u_nonce: bytes) -> bytes:
    """The COSE_KDF_Context (RFC 9053 section 5.2) of the one recipient: ``[alg, PartyUInfo [nil,
    nonce, nil], PartyVInfo [nil, nil, nil], SuppPubInfo [key bits, recipient protected]]``."""
    return cbor2.dumps(
        [CHACHA20_POLY1305, [None, party_u_nonce, None], [None, None, None], [256, _RECIPIENT_PROTECTED]]
    )


def content_key(shared: bytes, party_u_nonce: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the ECDH-SS shared secret, no salt, the KDF context as info: 32 bytes
    are one block, so T(1) = HMAC(PRK, info || 0x01)."""
    prk = hmac.digest(_ZERO_SALT, shared, hashlib.sha256)
    return hmac.digest(prk, kdf_context(party_u_nonce) + b"\x01", hashlib.sha256)


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
    signed = _sign1(body, key=agent.sign, kid=pub.sign_kid, aad=aad)
    pu_nonce = secrets.token_bytes(32) if party_u_nonce is None else party_u_nonce
    iv = secrets.token_bytes(12) if nonce is None else nonce
    shared = agent.kex.exchange(server.kex)
    ciphertext: bytes = crypto_aead_chacha20poly1305_ietf_encrypt(
        signed, cbor2.dumps(["Encrypt", _ENCRYPT_PROTECTED, aad]), iv, content_key(shared, pu_nonce)
    )
    static_key = {1: OKP, -1: X25519, -2: pub.kex}  # COSE_Key: kty, crv, x (the public key only)
    recipient = [_RECIPIENT_PROTECTED, {KID: server.kid.encode(), PARTY_U_NONCE: pu_nonce, STATIC_KEY: static_key}, b""]
    message = [_ENCRYPT_PROTECTED, {IV: iv}, ciphertext, [recipient]]
    return cbor2.dumps(cbor2.CBORTag(COSE_ENCRYPT_TAG, message))


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
    """The body of a readings envelope: ``{v, org, agent, sent, r: [[seq, device_id, metric, value,
    measured_at_us, device_time, flags]...], gaps: [[first, last] or [first, last, reason]...]}``,
    canonical CBOR (a gap's reason only when it has one)."""
    body = {
        "v": ENVELOPE_VERSION,
        "org": batch.org,
        "agent": batch.agent,
        "sent": micros(batch.sent_at),
        "r": [
            [r.seq, r.device_id, r.metric, r.value, micros(r.measured_at), r.device_time, sorted(r.flags)]
            for r in batch.readings
        ],
        "gaps": [[g.first, g.last] if g.reason is None else [g.first, g.last, g.reason] for g in batch.gaps],
    }
    return cbor2.dumps(body, canonical=True)


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

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

This module is what both sides need: the format's constants and the sealing that agents (and
tests) do. Opening an envelope is the server's alone and lives in ``ingest.opener``, which reads
the labels and algorithm ids below; it raises :class:`rpm_core.errors.EnvelopeError` subclasses
only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives import serialization as ser
from cwt import COSE, COSEKey, Recipient
from cwt.cose_key_interface import COSEKeyInterface

from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentKeys, ServerPublicKey
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
    "encode_batch",
    "external_aad",
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
_ED25519: Final = 6
COSE_ENCRYPT_TAG: Final = 96
COSE_SIGN1_TAG: Final = 18
# cwt's recipient context for the content algorithm (enters the COSE_KDF_Context).
KDF_CONTEXT: Final = {"alg": "ChaCha20/Poly1305"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_cose = COSE.new()


def external_aad(topic: Topic) -> bytes:
    """The associated data both COSE layers authenticate: version, topic and agent id."""
    return cbor2.dumps(["vigil", ENVELOPE_VERSION, str(topic), str(topic.agent)])


def micros(t: datetime) -> int:
    """Microseconds since 1970-01-01T00:00Z: how the body carries times."""
    return (t - _EPOCH) // timedelta(microseconds=1)


def _okp(kty_crv: int, alg: int, public: bytes, private: bytes | None, kid: str) -> COSEKeyInterface:
    params: dict[int, Any] = {1: OKP, 3: alg, -1: kty_crv, -2: public, 2: kid.encode()}
    if private is not None:
        params[-4] = private
    return COSEKey.new(params)


def _raw_private(key: Any) -> bytes:
    raw: bytes = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    return raw


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
    sign_key = _okp(_ED25519, EDDSA, pub.sign, _raw_private(agent.sign), pub.sign_kid)
    signed = _cose.encode_and_sign(
        body, sign_key, protected={ALG: EDDSA}, unprotected={KID: pub.sign_kid.encode()}, external_aad=aad
    )
    sender = _okp(X25519, ECDH_SS_HKDF_256, pub.kex, _raw_private(agent.kex), pub.kex_kid)
    recipient_pub = _okp(X25519, ECDH_SS_HKDF_256, server.kex, None, server.kid)
    r_unprotected: dict[int, Any] = {
        KID: server.kid.encode(),
        PARTY_U_NONCE: secrets.token_bytes(32) if party_u_nonce is None else party_u_nonce,
    }
    recipient = Recipient.new(
        protected={ALG: ECDH_SS_HKDF_256},
        unprotected=r_unprotected,
        sender_key=sender,
        recipient_key=recipient_pub,
        context=KDF_CONTEXT,
    )
    unprotected: dict[int, Any] = {} if nonce is None else {IV: nonce}
    sealed: bytes = _cose.encode_and_encrypt(
        bytes(signed),
        protected={ALG: CHACHA20_POLY1305, VERSION_LABEL: ENVELOPE_VERSION},
        unprotected=unprotected,
        recipients=[recipient],
        external_aad=aad,
    )
    return sealed


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

"""Server-to-agent messages (``.../down/receipts``, ``.../down/config``): signed, not encrypted.

They carry no PHI (sequence numbers, settings), so they are a COSE_Sign1 by the server's Ed25519
key, bound to the topic with the same external AAD as the envelope. An agent trusts the server
signing keys from its enrollment bundle (and later config pushes signed by a trusted key); the
broker ACL already keeps other agents off these topics, the signature keeps the broker itself
from forging a receipt that would empty an agent's outbox.

::

    Receipt  {v: 1, org, agent, through: uint, at: uint (us)}
        every reading of ``agent`` with sequence number <= through is committed (or will never be
        accepted and was dead-lettered): the agent may delete them from its outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import cbor2

from rpm_core.envelope import ENVELOPE_VERSION, external_aad
from rpm_core.errors import MalformedEnvelope, SignatureInvalid, UnknownKey, UnsupportedVersion
from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import ServerKey, ServerPublicKey, kid_of
from rpm_core.topics import Kind, Topic

__all__ = ["Receipt", "sign_downlink", "sign_receipt", "verify_downlink", "verify_receipt"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_DOWNLINK: Final = 64 * 1024
# Microseconds from 1970 to 10000-01-01: a later `at` is not a datetime (found by bench.fuzz: OverflowError).
_MAX_MICROS: Final = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def _cbor(data: bytes) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2's tag decoders raise decimal.InvalidOperation, RuntimeError, ... on hostile bytes
        raise MalformedEnvelope("downlink is not CBOR") from exc


def sign_downlink(payload: bytes, *, topic: Topic, server: ServerKey) -> bytes:
    pub = server.public()
    kid = kid_of(pub.sign).encode()
    protected = cbor2.dumps({1: -8})
    to_sign = cbor2.dumps(["Signature1", protected, external_aad(topic), payload])
    signature = server.sign.sign(to_sign)
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {4: kid}, payload, signature]))


def verify_downlink(data: bytes, *, topic: Topic, trusted: Sequence[ServerPublicKey]) -> bytes:
    """Verify a server message on ``topic`` against the trusted server keys; return its payload."""
    if len(data) > _MAX_DOWNLINK:
        raise MalformedEnvelope("too large")
    msg = _cbor(data)
    v = msg.value if isinstance(msg, cbor2.CBORTag) and msg.tag == 18 else None
    if not (isinstance(v, list) and len(v) == 4 and all(isinstance(x, bytes) for x in (v[0], v[2], v[3]))):
        raise MalformedEnvelope("not a COSE_Sign1")
    if not isinstance(v[1], dict) or _cbor(v[0]) != {1: -8}:
        raise MalformedEnvelope("unexpected headers")
    kid = v[1].get(4)
    key = next((k for k in trusted if kid_of(k.sign).encode() == kid), None)
    if key is None:
        raise UnknownKey(kid.decode("ascii", "replace") if isinstance(kid, bytes) else "?")
    if not key.verify(v[3], cbor2.dumps(["Signature1", v[0], external_aad(topic), v[2]])):
        raise SignatureInvalid
    payload: bytes = v[2]
    return payload


@dataclass(frozen=True, slots=True)
class Receipt:
    org: OrgId
    agent: AgentId
    through: int
    at: datetime

    @property
    def topic(self) -> Topic:
        return Topic(self.org, self.agent, Kind.RECEIPTS)


def sign_receipt(receipt: Receipt, server: ServerKey) -> bytes:
    body = {
        "v": ENVELOPE_VERSION,
        "org": receipt.org,
        "agent": receipt.agent,
        "through": receipt.through,
        "at": (receipt.at - _EPOCH) // timedelta(microseconds=1),
    }
    return sign_downlink(cbor2.dumps(body, canonical=True), topic=receipt.topic, server=server)


def verify_receipt(data: bytes, *, topic: Topic, trusted: Sequence[ServerPublicKey]) -> Receipt:
    if topic.kind is not Kind.RECEIPTS:
        raise MalformedEnvelope("not a receipts topic")
    doc = _cbor(verify_downlink(data, topic=topic, trusted=trusted))
    if not isinstance(doc, dict):
        raise MalformedEnvelope("receipt is not a map")
    if doc.get("v") != ENVELOPE_VERSION:
        raise UnsupportedVersion(doc.get("v"))
    through, at = doc.get("through"), doc.get("at")
    if doc.get("org") != topic.org or doc.get("agent") != topic.agent:
        raise MalformedEnvelope("receipt for another agent")
    if not isinstance(through, int) or through < 0 or not isinstance(at, int) or not 0 <= at < _MAX_MICROS:
        raise MalformedEnvelope("bad receipt fields")
    return Receipt(topic.org, topic.agent, through, _EPOCH + timedelta(microseconds=at))

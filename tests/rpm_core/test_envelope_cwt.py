"""The agent's sealer (``rpm_core.envelope``, COSE written with cbor2 and libsodium) against cwt.

Format v1 was first sealed with cwt, and ingest's opener was checked against cwt's decoder; the
agent no longer loads cwt. cwt stays here as the reference, a test oracle:

* for the same keys, nonces, topic and body, our sealer and cwt's ``encode_and_encrypt`` over
  ``encode_and_sign`` (the former implementation, :func:`seal_with_cwt`) give the same bytes;
* cwt's decoder opens what we seal and verifies its signature; ingest's opener opens what cwt seals
  (and what we seal), so both directions of the wire agree whichever side produced it.
"""

from __future__ import annotations

from typing import Any

import cbor2
from cwt import COSE, COSEKey, Recipient
from cwt.utils import to_recipient_context
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.opener import EnvelopeOpener
from rpm_core.envelope import (
    ALG,
    CHACHA20_POLY1305,
    ECDH_SS_HKDF_256,
    EDDSA,
    ENVELOPE_VERSION,
    IV,
    KDF_CONTEXT,
    KID,
    OKP,
    PARTY_U_NONCE,
    STATIC_KEY,
    VERSION_LABEL,
    X25519,
    external_aad,
    kdf_context,
    seal_batch,
    seal_envelope,
)
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, Ed25519Key, ServerKey, ServerPublicKey, X25519Key
from rpm_core.topics import Topic
from tests.rpm_core.envelope_fixtures import batch

_ED25519 = 6  # COSE_Key crv


def _raw(key: Ed25519Key | X25519Key) -> bytes:
    return key.private_bytes_raw()


def _okp(crv: int, alg: int, public: bytes, private: bytes | None, kid: str) -> Any:
    params: dict[int, Any] = {1: OKP, 3: alg, -1: crv, -2: public, 2: kid.encode()}
    if private is not None:
        params[-4] = private
    return COSEKey.new(params)


def seal_with_cwt(
    body: bytes, *, topic: Topic, agent: AgentKeys, server: ServerPublicKey, nonce: bytes, party_u_nonce: bytes
) -> bytes:
    """How ``rpm_core.envelope.seal_envelope`` sealed with cwt 3.3 before the agent stopped loading it."""
    cose, aad, pub = COSE.new(), external_aad(topic), agent.public()
    sign_key = _okp(_ED25519, EDDSA, pub.sign, _raw(agent.sign), pub.sign_kid)
    signed = cose.encode_and_sign(
        body, sign_key, protected={ALG: EDDSA}, unprotected={KID: pub.sign_kid.encode()}, external_aad=aad
    )
    recipient = Recipient.new(
        protected={ALG: ECDH_SS_HKDF_256},
        unprotected={KID: server.kid.encode(), PARTY_U_NONCE: party_u_nonce},
        sender_key=_okp(X25519, ECDH_SS_HKDF_256, pub.kex, _raw(agent.kex), pub.kex_kid),
        recipient_key=_okp(X25519, ECDH_SS_HKDF_256, server.kex, None, server.kid),
        context=KDF_CONTEXT,
    )
    sealed: bytes = cose.encode_and_encrypt(
        bytes(signed),
        protected={ALG: CHACHA20_POLY1305, VERSION_LABEL: ENVELOPE_VERSION},
        unprotected={IV: nonce},
        recipients=[recipient],
        external_aad=aad,
    )
    return sealed


def open_with_cwt(data: bytes, *, topic: Topic, agent: AgentKeys, server: ServerKey) -> bytes:
    """cwt's decoder: decrypt with the server's X25519 key, then verify the agent's COSE_Sign1."""
    cose, aad, spub, apub = COSE.new(), external_aad(topic), server.public(), agent.public()
    kex = _okp(X25519, ECDH_SS_HKDF_256, spub.kex, _raw(server.kex), spub.kid)
    signed = cose.decode(data, keys=[kex], context=KDF_CONTEXT, external_aad=aad)
    verify = _okp(_ED25519, EDDSA, apub.sign, None, apub.sign_kid)
    body: bytes = cose.decode(signed, keys=[verify], external_aad=aad)
    return body


_key_bytes = st.binary(min_size=32, max_size=32)
_topics = st.builds(
    lambda org, agent: Topic.readings(org_id(org), agent_id(agent)),
    st.sampled_from(["clinic-1", "org-a", "x"]),
    st.sampled_from(["agt-0001", "agt-b", "a"]),
)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=600),
    topic=_topics,
    keys=st.tuples(_key_bytes, _key_bytes, _key_bytes, _key_bytes),
    nonce=st.binary(min_size=12, max_size=12),
    party_u_nonce=st.binary(min_size=32, max_size=32),
)
def test_same_bytes_as_cwt(
    body: bytes, topic: Topic, keys: tuple[bytes, bytes, bytes, bytes], nonce: bytes, party_u_nonce: bytes
) -> None:
    agent = AgentKeys(Ed25519Key(keys[0]), X25519Key(keys[1]))
    server = ServerKey(X25519Key(keys[2]), Ed25519Key(keys[3]))
    args: dict[str, Any] = {"topic": topic, "agent": agent, "server": server.public()}
    ours = seal_envelope(body, **args, nonce=nonce, party_u_nonce=party_u_nonce)
    theirs = seal_with_cwt(body, **args, nonce=nonce, party_u_nonce=party_u_nonce)
    assert ours == theirs
    assert open_with_cwt(ours, topic=topic, agent=agent, server=server) == body


def test_kdf_context_is_cwts() -> None:
    nonce = bytes(range(32))
    header: dict[str | int, Any] = {KID: b"kid", PARTY_U_NONCE: nonce, STATIC_KEY: {}}
    assert kdf_context(nonce) == cbor2.dumps(to_recipient_context(ECDH_SS_HKDF_256, header, KDF_CONTEXT))


def test_random_nonces_open_both_ways() -> None:
    """With fresh random nonces (the production path): cwt opens ours, ingest opens ours and cwt's."""
    agent, server = AgentKeys.generate(), ServerKey.generate()
    opener = EnvelopeOpener({server.kid: server})
    sample = batch(4)
    topic, ours = seal_batch(sample, agent=agent, server=server.public())
    body = opener.open(ours, topic=topic, agent=agent.public())
    assert open_with_cwt(ours, topic=topic, agent=agent, server=server) == body
    theirs = seal_with_cwt(
        body, topic=topic, agent=agent, server=server.public(), nonce=bytes(12), party_u_nonce=bytes(32)
    )
    assert opener.open(theirs, topic=topic, agent=agent.public()) == body
    assert opener.open_batch(ours, topic=topic, agent=agent.public()).readings == sample.readings
    again = seal_batch(sample, agent=agent, server=server.public())[1]
    assert again != ours  # fresh IV and PartyU nonce per envelope

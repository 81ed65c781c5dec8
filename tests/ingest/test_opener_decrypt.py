"""Our COSE_Encrypt decryptor (``ingest.opener``) agrees with cwt's on valid, tampered and misdirected
envelopes.

cwt's decoder is the reference here only, a test oracle: production opens envelopes one way, with
the opener. Both of the opener's paths are compared: a registered agent's (sender key checked, shared
secret remembered) and a registration's (any sender, computed afresh).
"""

from __future__ import annotations

import cbor2
import pytest
from cwt import COSE, COSEKey
from cwt.exceptions import CWTError
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.opener import EnvelopeOpener
from rpm_core.envelope import ECDH_SS_HKDF_256, KDF_CONTEXT, OKP, PARTY_U_NONCE, X25519, external_aad, seal_batch
from rpm_core.errors import DecryptionFailed, EnvelopeError
from rpm_core.ids import agent_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.topics import Topic
from tests.rpm_core.envelope_fixtures import AGENT, ORG, batch

SERVER = ServerKey.generate()
AGENT_KEYS = AgentKeys.generate()
TOPIC, SEALED = seal_batch(batch(5), agent=AGENT_KEYS, server=SERVER.public())
OPENER = EnvelopeOpener({SERVER.kid: SERVER})
SENDERS = {"registered": AGENT_KEYS.public().kex, "registration": None}


def decrypt_with_cwt(data: bytes, *, topic: Topic, server: ServerKey) -> bytes:
    """The reference decoder: cwt's own COSE_Encrypt decryption with the server's X25519 key."""
    spub = server.public()
    private = server.kex.private_bytes_raw()
    key = COSEKey.new({1: OKP, 3: ECDH_SS_HKDF_256, -1: X25519, -2: spub.kex, -4: private, 2: spub.kid.encode()})
    try:
        signed: bytes = COSE.new().decode(data, keys=[key], context=KDF_CONTEXT, external_aad=external_aad(topic))
    except (CWTError, ValueError, TypeError, KeyError) as exc:
        raise DecryptionFailed from exc
    return signed


def both(data: bytes, topic: Topic = TOPIC, sender: str = "registered") -> tuple[object, object]:
    try:
        ours: object = OPENER._decrypt(data, external_aad(topic), sender_kex=SENDERS[sender])[0]
    except EnvelopeError as exc:
        ours = "rejected"
        structural = exc.reason in ("malformed", "unknown_key", "unsupported_algorithm", "unsupported_version")
        if structural:  # refused before any decryption: cwt is never asked
            return ours, ours
    try:
        theirs: object = decrypt_with_cwt(data, topic=topic, server=SERVER)
    except EnvelopeError:
        theirs = "rejected"
    return ours, theirs


@pytest.mark.parametrize("sender", SENDERS)
def test_valid_envelope_same_plaintext(sender: str) -> None:
    ours, theirs = both(SEALED, sender=sender)
    assert ours == theirs
    assert isinstance(ours, bytes)


@pytest.mark.parametrize("sender", SENDERS)
def test_other_topic_rejected_by_both(sender: str) -> None:
    other = Topic.readings(ORG, agent_id("agt-0002"))
    assert both(SEALED, other, sender) == ("rejected", "rejected")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SEALED) - 1), st.integers(1, 255), st.sampled_from(sorted(SENDERS)))
def test_tampered_envelopes_agree(i: int, x: int, sender: str) -> None:
    data = bytearray(SEALED)
    data[i] ^= x
    # Structure errors are refused before decryption (we may be stricter than cwt, never laxer);
    # every flip that reaches decryption is refused by both decryptors.
    assert both(bytes(data), sender=sender) == ("rejected", "rejected")


def test_every_envelope_has_its_own_key_despite_the_cached_secret() -> None:
    t1, a = seal_batch(batch(1), agent=AGENT_KEYS, server=SERVER.public())
    _, b = seal_batch(batch(1), agent=AGENT_KEYS, server=SERVER.public())
    assert a != b
    for data in (a, b):
        assert both(data, t1)[0] == both(data, t1)[1]
    assert (SERVER.kid, AGENT_KEYS.public().kex) in OPENER._secrets  # the registered path remembered it
    assert AGENT == "agt-0001"


@pytest.mark.parametrize("sender", SENDERS)
def test_many_nonces_same_plaintext_as_cwt(sender: str) -> None:
    """Each envelope's content key comes from its own PartyU nonce (spliced into the KDF context,
    expanded from the remembered pseudo-random key): cwt, deriving everything afresh, agrees."""
    for n in range(1, 41):
        topic, data = seal_batch(batch(1 + n % 5), agent=AGENT_KEYS, server=SERVER.public())
        ours, theirs = both(data, topic, sender)
        assert isinstance(ours, bytes)
        assert ours == theirs


def test_a_nonce_from_another_envelope_does_not_open() -> None:
    """Swapping the PartyU nonce (same length, same shape) changes the content key: refused by both."""
    _, a = seal_batch(batch(1), agent=AGENT_KEYS, server=SERVER.public())
    _, b = seal_batch(batch(1), agent=AGENT_KEYS, server=SERVER.public())
    nonce_a, nonce_b = _nonce(a), _nonce(b)
    swapped = a.replace(nonce_a, nonce_b)
    assert swapped != a
    for sender in SENDERS:
        assert both(swapped, sender=sender) == ("rejected", "rejected")


def _nonce(envelope: bytes) -> bytes:
    nonce: bytes = cbor2.loads(envelope).value[3][0][1][PARTY_U_NONCE]
    return nonce

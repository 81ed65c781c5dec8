"""Our COSE_Encrypt decryptor agrees with cwt's on valid, tampered and misdirected envelopes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rpm_core import envelope
from rpm_core.errors import EnvelopeError
from rpm_core.ids import agent_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.topics import Topic
from tests.rpm_core.envelope_fixtures import AGENT, ORG, batch

SERVER = ServerKey.generate()
AGENT_KEYS = AgentKeys.generate()
TOPIC, SEALED = envelope.seal_batch(batch(5), agent=AGENT_KEYS, server=SERVER.public())


def both(data: bytes, topic: Topic = TOPIC) -> tuple[object, object]:
    try:
        ours: object = envelope.decrypt_envelope(data, topic=topic, server_keys={SERVER.kid: SERVER}, sender_kex=None)[
            0
        ]
    except EnvelopeError as exc:
        ours = "rejected"
        structural = exc.reason in ("malformed", "unknown_key", "unsupported_algorithm", "unsupported_version")
        if structural:  # refused before any decryption: cwt is never asked
            return ours, ours
    try:
        theirs: object = envelope.decrypt_with_cwt(data, topic=topic, server=SERVER)
    except EnvelopeError:
        theirs = "rejected"
    return ours, theirs


def test_valid_envelope_same_plaintext() -> None:
    ours, theirs = both(SEALED)
    assert ours == theirs
    assert isinstance(ours, bytes)


def test_other_topic_rejected_by_both() -> None:
    other = Topic.readings(ORG, agent_id("agt-0002"))
    assert both(SEALED, other) == ("rejected", "rejected")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SEALED) - 1), st.integers(1, 255))
def test_tampered_envelopes_agree(i: int, x: int) -> None:
    data = bytearray(SEALED)
    data[i] ^= x
    # Structure errors are refused before decryption (we may be stricter than cwt, never laxer);
    # every flip that reaches decryption is refused by both decryptors.
    assert both(bytes(data)) == ("rejected", "rejected")


def test_every_envelope_has_its_own_key_despite_the_cached_secret() -> None:
    t1, a = envelope.seal_batch(batch(1), agent=AGENT_KEYS, server=SERVER.public())
    _, b = envelope.seal_batch(batch(1), agent=AGENT_KEYS, server=SERVER.public())
    assert a != b
    for data in (a, b):
        assert both(data, t1)[0] == both(data, t1)[1]
    assert AGENT == "agt-0001"

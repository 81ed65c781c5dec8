"""Issue 10 item 1, as a property: whatever CBOR an enrolled agent puts into any header or body field
of an otherwise valid envelope, ``classify`` returns an outcome for it (stored, absorbed or a dead
letter with a precise reason and a bounded detail) and never raises.

Values: integers of thousands of digits, deep nesting, wrong types, invalid UTF-8 where text is
expected, NaN and infinities, CBOR tags (semantic ones too: dates, bignums, decimals, regular
expressions, MIME, sets, IP addresses), undefined and simple values. Every field: the outer
COSE_Encrypt protected and unprotected headers, the recipient's, the COSE_Sign1 headers, payload
and signature, the readings body and each reading's fields, the status body and its devices, the
registration body. Inner fields are signed and encrypted with the agent's real keys
(tests/support/envelope_forge.py), so each value reaches the check that reads it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.classify import Incoming, classify
from ingest.opener import EnvelopeOpener
from rpm_core.enrollment import new_token, token_digest
from rpm_core.envelope import encode_batch
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.status import AgentStatus, DeviceStatus
from rpm_core.topics import Topic
from store.agents import AgentRecord, Assignment
from tests.rpm_core.envelope_fixtures import AGENT, ORG, T, batch
from tests.support.envelope_forge import UNSET, Parts, RawCBOR, forge

SERVER = ServerKey.generate()
KEYS = AgentKeys.generate()
TOKEN = new_token()
NOW = T + timedelta(minutes=1)
ACTIVE = AgentRecord(AGENT, ORG, "active", KEYS.public(), None, None, (Assignment("p1", T - timedelta(days=30), None),))
PENDING = AgentRecord(AGENT, ORG, "pending", None, token_digest(TOKEN), NOW + timedelta(days=1), ())
OPENER = EnvelopeOpener({SERVER.kid: SERVER})  # one for every example, as a worker has one

# -- arbitrary CBOR -------------------------------------------------------------------------------

_TAGS = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 35, 36, 37, 52, 54, 256, 258, 260, 261]),
    st.sampled_from([55799, 18, 96, 98, 16, 61]),
    st.integers(min_value=0, max_value=2**64 - 1),
)
_RAW = st.sampled_from(
    [
        RawCBOR(b"\x62\xff\xfe"),  # a text string that is not UTF-8
        RawCBOR(b"\x63\xed\xa0\x80"),  # a UTF-8 encoded surrogate
        RawCBOR(b"\x7f\x61a\x41b\xff"),  # an indefinite text string with a byte-string chunk
        RawCBOR(b"\xf9\x7e\x00"),  # half-precision NaN
        RawCBOR(b"\xfa\x7f\x80\x00\x00"),  # single-precision infinity
        RawCBOR(b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff"),  # 2**64 - 1
        RawCBOR(b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff"),  # -2**64
        RawCBOR(b"\xc2\x5a\x00\x00\x10\x00" + b"\x9b" * 4096),  # a 32768-bit bignum
        RawCBOR(b"\xd8\x1d\x18\x63"),  # a shared-value reference to nothing
        RawCBOR(b"\xa2\x01\x01\x01\x02"),  # a map with a repeated key
        RawCBOR(b"\xbf\x01"),  # an indefinite map that never ends
    ]
)
_LEAVES = st.one_of(
    st.integers(),
    st.builds(lambda digits, sign: sign * 10**digits, st.integers(4000, 6000), st.sampled_from([1, -1])),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=64),
    st.booleans(),
    st.none(),
    st.just(cbor2.undefined),
    st.one_of(st.integers(0, 19), st.integers(32, 255)).map(cbor2.CBORSimpleValue),
    _RAW,
    st.integers(50, 3000).map(lambda depth: RawCBOR(b"\x81" * depth + b"\x01")),  # deep nesting
)
CBOR = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.integers(-70000, 70000), st.text(max_size=8)), children, max_size=4),
        st.builds(cbor2.CBORTag, _TAGS, children),
    ),
    max_leaves=12,
)
VALUE = st.one_of(CBOR, st.just(UNSET))  # UNSET: the field is missing

# -- the fields -----------------------------------------------------------------------------------

ENVELOPE_FIELDS: list[tuple[Any, ...]] = [
    ("enc_protected",),
    ("enc_protected", 1),
    ("enc_protected", -65537),
    ("enc_protected", 99),
    ("enc_unprotected",),
    ("enc_unprotected", 5),
    ("enc_unprotected", -20),
    ("ciphertext",),
    ("recipients",),
    ("rec_protected",),
    ("rec_protected", 1),
    ("rec_unprotected",),
    ("rec_unprotected", 4),
    ("rec_unprotected", -22),
    ("rec_unprotected", -2),
    ("rec_unprotected", -2, 1),
    ("rec_unprotected", -2, -1),
    ("rec_unprotected", -2, -2),
    ("rec_unprotected", -2, 3),
    ("rec_unprotected", -20),
    ("rec_ciphertext",),
    ("sign_protected",),
    ("sign_protected", 1),
    ("sign_unprotected",),
    ("sign_unprotected", 4),
    ("payload",),
    ("signature",),
    ("body",),
]
READINGS_FIELDS = [
    *[("body", k) for k in ("v", "org", "agent", "sent", "r", "gaps", "extra")],
    ("body", "r", 0),
    *[("body", "r", 0, i) for i in range(7)],
    ("body", "r", 0, 6, 0),
    ("body", "gaps", 0),
    ("body", "gaps", 0, 0),
    ("body", "gaps", 0, 1),
]
STATUS_FIELDS = [
    *[
        ("body", k)
        for k in (
            "v",
            "org",
            "agent",
            "online",
            "sent_at",
            "agent_version",
            "outbox_depth",
            "outbox_oldest",
            "last_receipt",
            "devices",
            "alarms",
            "extra",
        )
    ],
    ("body", "devices", 0),
    *[("body", "devices", 0, k) for k in ("device_id", "profile", "last_seen", "battery_pct", "clock_skew_s", "x")],
    ("body", "alarms", 0),
]
REGISTRATION_FIELDS = [
    ("body", k) for k in ("v", "type", "org", "agent", "sign", "kex", "token", "agent_version", "extra")
]


def readings_body() -> dict[str, Any]:
    doc: dict[str, Any] = cbor2.loads(encode_batch(batch(2)))
    doc["gaps"] = [[10, 12]]
    return doc


def status_body() -> dict[str, Any]:
    status = AgentStatus(
        org=ORG,
        agent=AGENT,
        online=True,
        sent_at=T,
        devices=(DeviceStatus(device_id="F0:12:34:56:78:9A", profile="heart_rate", battery_pct=50, last_seen=T),),
        alarms=frozenset({"disk_full"}),
    )
    doc: dict[str, Any] = status.to_doc()
    doc["v"] = 1
    return doc


def registration_body() -> dict[str, Any]:
    pub = KEYS.public()
    return {
        "v": 1,
        "type": "register",
        "org": ORG,
        "agent": AGENT,
        "sign": pub.sign,
        "kex": pub.kex,
        "token": TOKEN,
        "agent_version": "1.0",
    }


def outcome(kind: Topic, body: dict[str, Any], record: AgentRecord, path: tuple[Any, ...], value: Any) -> None:
    parts = Parts.valid(body, agent=KEYS, server=SERVER.public())
    try:
        parts.set(path, value)
    except (KeyError, IndexError, TypeError):  # the parent was replaced already: nothing to set
        return
    data = forge(parts, topic=kind, agent=KEYS, server=SERVER.public())
    out = classify([Incoming(str(kind), data, None, 0.0)], {AGENT: record}, OPENER, now=NOW)
    assert sum(out.kinds.values()) == 1  # stored, absorbed or dead-lettered: exactly one outcome
    if out.kinds["dead_letter"]:
        [row] = out.write.dead_letters
        assert row.reason != "internal_error", row.detail  # every refusal has its precise reason
        assert len(row.detail) <= 500
        assert re.search(r"\d{40}", row.detail) is None  # never the untrusted number itself
        assert not out.write.readings  # nothing of a refused message is written
        assert not out.write.activations


def test_the_forge_reproduces_valid_envelopes() -> None:
    # Without a change every kind is accepted: the fuzzed field, not the forge, makes the difference.
    readings, status = Topic.readings(ORG, AGENT), Topic.status(ORG, AGENT)
    for topic, body, record, kind in (
        (readings, readings_body(), ACTIVE, "readings"),
        (status, status_body(), ACTIVE, "status"),
        (status, registration_body(), PENDING, "registration"),
    ):
        parts = Parts.valid(body, agent=KEYS, server=SERVER.public())
        data = forge(parts, topic=topic, agent=KEYS, server=SERVER.public())
        out = classify([Incoming(str(topic), data, None, 0.0)], {AGENT: record}, OPENER, now=NOW)
        assert dict(out.kinds) == {kind: 1}


_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("path", ENVELOPE_FIELDS + READINGS_FIELDS, ids=repr)
@_FUZZ
@given(value=VALUE)
def test_any_value_in_any_readings_envelope_field(path: tuple[Any, ...], value: Any) -> None:
    outcome(Topic.readings(ORG, AGENT), readings_body(), ACTIVE, path, value)


@pytest.mark.parametrize("path", [*STATUS_FIELDS, ("sign_unprotected", 4), ("enc_protected", -65537)], ids=repr)
@_FUZZ
@given(value=VALUE)
def test_any_value_in_any_status_field(path: tuple[Any, ...], value: Any) -> None:
    outcome(Topic.status(ORG, AGENT), status_body(), ACTIVE, path, value)


@pytest.mark.parametrize("path", [*REGISTRATION_FIELDS, ("rec_unprotected", -2, -2), ("sign_protected", 1)], ids=repr)
@_FUZZ
@given(value=VALUE)
def test_any_value_in_any_registration_field(path: tuple[Any, ...], value: Any) -> None:
    outcome(Topic.status(ORG, AGENT), registration_body(), PENDING, path, value)


@pytest.mark.parametrize("kind", ["readings", "status"])
def test_deep_nesting_as_the_whole_body(kind: str) -> None:
    topic = Topic.readings(ORG, AGENT) if kind == "readings" else Topic.status(ORG, AGENT)
    for depth in (1000, 20_000, 100_000):
        outcome(topic, readings_body(), ACTIVE, ("payload",), b"\x81" * depth + b"\x01")

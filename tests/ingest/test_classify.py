"""``ingest.classify`` without I/O: one message's failure is that message's, dead letters are
bounded, freshness is flagged (issue 10 items 1, 7 and 9)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import cbor2

from ingest.classify import Incoming, Limits, classify, clean_topic, publisher_of
from ingest.opener import EnvelopeOpener
from rpm_core.envelope import ReadingBatch, encode_batch, seal_batch, seal_envelope
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.topics import Topic
from store.agents import AgentRecord, Assignment
from tests.support.agents import T0, readings

SERVER = ServerKey.generate()
KEYS = {name: AgentKeys.generate() for name in ("agt-a", "agt-b")}
ORG = org_id("clinic-1")
NOW = T0 + timedelta(hours=1)


def record(name: str, assignments: tuple[Any, ...] | None = None) -> AgentRecord:
    sole = (Assignment("p1", T0 - timedelta(days=30), None),)
    return AgentRecord(
        name, ORG, "active", KEYS[name].public(), None, None, sole if assignments is None else assignments
    )


def envelope(name: str, first: int, n: int = 3, *, sent_at: datetime = NOW, flags: list[str] | None = None) -> Incoming:
    agent = agent_id(name)
    batch = ReadingBatch(ORG, agent, sent_at, tuple(readings(name, first, n)))
    topic, data = seal_batch(batch, agent=KEYS[name], server=SERVER.public())
    if flags is not None:  # the agent signs whatever flags it likes
        body = cbor2.loads(encode_batch(batch))
        for row in body["r"]:
            row[6] = flags
        data = seal_envelope(cbor2.dumps(body), topic=topic, agent=KEYS[name], server=SERVER.public())
    return Incoming(str(topic), data, None, 0.0)


def run(*messages: Incoming, agents: dict[str, AgentRecord] | None = None, **kw: Any):
    agents = agents if agents is not None else {n: record(n) for n in KEYS}
    return classify(list(messages), agents, EnvelopeOpener(kw.pop("keys", {SERVER.kid: SERVER})), now=NOW, **kw)


# -- item 1: any exception is one message's dead letter ---------------------------------------------


class ExplodingKeys(Mapping[str, ServerKey]):
    """A key store that fails in a way nobody foresaw (the seam ``classify``'s opener reads server keys
    from)."""

    def __getitem__(self, kid: str) -> ServerKey:
        raise RuntimeError("secret detail 0123456789 that must not be stored")

    def __iter__(self) -> Iterator[str]:
        return iter([SERVER.kid])

    def __len__(self) -> int:
        return 1

    def get(self, kid: str, default: Any = None) -> Any:
        return self[kid]


def test_an_unexpected_exception_is_a_dead_letter_naming_type_and_place_never_text() -> None:
    out = run(envelope("agt-a", 1), envelope("agt-b", 1), keys=ExplodingKeys())
    assert out.kinds == {"dead_letter": 2}
    for row in out.write.dead_letters:
        assert row.reason == "internal_error"
        assert row.detail.startswith("RuntimeError at ingest/test_classify.py:")
        assert "secret" not in row.detail
    assert [topic for topic, _ in out.internal] == [str(Topic.readings(ORG, agent_id(n))) for n in ("agt-a", "agt-b")]


class FailsAfter:
    """A ``valid_from`` that compares for readings up to T0 + 1 s and raises for later ones: a fault
    in the middle of a message, after some of its rows were built."""

    def __le__(self, when: datetime) -> bool:
        if when > T0 + timedelta(seconds=1):
            raise RuntimeError("boom")
        return True


def test_a_message_failing_half_way_leaves_nothing_behind_and_the_next_is_stored() -> None:
    agents = {
        "agt-a": record(
            "agt-a",
            (Assignment("p0", T0 - timedelta(days=9), T0 - timedelta(days=8)), Assignment("p1", FailsAfter(), None)),
        ),  # type: ignore[arg-type]
        "agt-b": record("agt-b"),
    }
    out = run(envelope("agt-a", 1, 5), envelope("agt-b", 1, 5), agents=agents)
    assert out.kinds == {"dead_letter": 1, "readings": 1}
    assert {r.agent_id for r in out.write.readings} == {"agt-b"}  # none of agt-a's first rows
    assert len(out.write.readings) == 5
    assert list(out.receipts) == ["agt-b"]
    assert list(out.write.seen) == ["agt-b"]


# -- item 7: dead letters are bounded and name their publisher ---------------------------------------


def test_a_dead_letter_keeps_a_bounded_prefix_the_length_and_the_hash() -> None:
    garbage = bytes(range(256)) * 100
    topic = f"vigil/v1/{ORG}/agt-a/up/readings"
    [row] = run(Incoming(topic, garbage, None, 0.0), limits=Limits(payload_max_bytes=1000)).write.dead_letters
    assert (row.reason, row.agent_id, row.org_id) == ("malformed", "agt-a", ORG)
    assert row.payload == garbage[:1000]
    assert (row.payload_bytes, row.payload_sha256) == (len(garbage), hashlib.sha256(garbage).digest())


def test_unknown_kinds_under_an_agents_own_subtree_are_counted_against_that_agent() -> None:
    for topic in (f"vigil/v1/{ORG}/agt-a/up/junk", f"vigil/v1/{ORG}/agt-a/up/a/b/c"):
        [row] = run(Incoming(topic, b"x", None, 0.0)).write.dead_letters
        assert (row.reason, row.agent_id, row.org_id) == ("bad_topic", "agt-a", ORG)
    assert publisher_of("vigil/v1/clinic-1/agt-a/down/receipts") == (None, None)
    assert publisher_of("vigil/v1/Bad Org/agt-a/up/readings") == (None, None)
    assert publisher_of("elsewhere") == (None, None)


def test_stored_topics_are_bounded_and_escaped() -> None:
    assert clean_topic("vigil/v1/o/a/up/x\x00\n") == "vigil/v1/o/a/up/x\\x00\\n"
    assert len(clean_topic("x" * 100_000)) == 512


# -- item 9: freshness -------------------------------------------------------------------------------


def test_envelopes_outside_the_freshness_window_are_stored_flagged_and_counted() -> None:
    limits = Limits(max_age=timedelta(days=7), max_ahead=timedelta(minutes=5), max_behind=timedelta(hours=1))
    out = run(
        envelope("agt-a", 1, sent_at=NOW - timedelta(days=7, seconds=1)),
        envelope("agt-a", 4, sent_at=NOW - timedelta(days=1)),  # a Pi a day behind (or a day in the broker)
        envelope("agt-a", 7, sent_at=NOW + timedelta(minutes=5, seconds=1)),
        envelope("agt-b", 1, sent_at=NOW + timedelta(minutes=4)),  # within: a small skew
        envelope("agt-b", 4, sent_at=NOW - timedelta(minutes=59)),  # within: a short wait in the broker
        limits=limits,
    )
    flags = {(r.agent_id, r.seq): r.flags for r in out.write.readings}
    assert [flags[("agt-a", s)] for s in (1, 4, 7)] == [
        ["contact", "ingest:sent_long_ago"],
        ["contact", "ingest:sent_late"],
        ["contact", "ingest:sent_in_future"],
    ]
    assert flags[("agt-b", 1)] == flags[("agt-b", 4)] == ["contact"]
    assert out.stale == {
        ("agt-a", "sent_long_ago"): 1,
        ("agt-a", "sent_late"): 1,
        ("agt-a", "sent_in_future"): 1,
    }
    assert out.write.seen["agt-a"] == NOW  # a clock running ahead does not move last seen past now
    assert out.kinds == {"readings": 5}  # recorded, never dropped


def test_the_ingest_flag_namespace_is_the_servers() -> None:
    out = run(envelope("agt-a", 1, flags=["contact", "ingest:sent_in_future"]))
    assert {tuple(r.flags) for r in out.write.readings} == {("contact",)}
    assert not out.stale

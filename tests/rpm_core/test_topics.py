from __future__ import annotations

import pytest

from rpm_core.errors import InvalidIdentifier, TopicError
from rpm_core.ids import agent_id, new_id, org_id
from rpm_core.topics import Direction, Kind, Topic, ingest_subscription


def test_topic_names_follow_the_architecture() -> None:
    org, agent = org_id("clinic-1"), agent_id("agt-7")
    assert str(Topic.readings(org, agent)) == "vigil/v1/clinic-1/agt-7/up/readings"
    assert str(Topic.status(org, agent)) == "vigil/v1/clinic-1/agt-7/up/status"
    assert str(Topic.receipts(org, agent)) == "vigil/v1/clinic-1/agt-7/down/receipts"
    assert str(Topic.config(org, agent)) == "vigil/v1/clinic-1/agt-7/down/config"
    assert Topic.agent_filter(org, agent, Direction.UP) == "vigil/v1/clinic-1/agt-7/up/#"
    assert ingest_subscription() == "$share/ingest/vigil/v1/+/+/up/#"


@pytest.mark.parametrize("kind", list(Kind))
def test_parse_inverts_str(kind: Kind) -> None:
    t = Topic(org_id("o"), agent_id("a"), kind)
    assert Topic.parse(str(t)) == t


@pytest.mark.parametrize(
    "bad",
    [
        "vigil/v1/o/a/up/receipts",  # receipts travel down
        "vigil/v1/o/a/down/readings",
        "vigil/v2/o/a/up/readings",
        "vigil/v1/o/a/up/readings/extra",
        "vigil/v1/O#/a/up/readings",
        "vigil/v1/o/+/up/readings",
        "vigil/v1/o/a/up/unknown",
        "",
    ],
)
def test_parse_rejects_foreign_topics(bad: str) -> None:
    with pytest.raises(TopicError) as err:
        Topic.parse(bad)
    assert err.value.topic == bad


@pytest.mark.parametrize("bad", ["", "A", "a/b", "a+b", "a#", "a b", "-a", "x" * 64])
def test_topic_safe_ids_reject_mqtt_wildcards_and_separators(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        agent_id(bad)


def test_new_ids_are_topic_safe_and_unique() -> None:
    ids = {new_id("agt") for _ in range(100)}
    assert len(ids) == 100
    for i in ids:
        assert agent_id(i) == i

"""Sealing (the agent's side of the envelope). Opening is the server's: tests/ingest/test_opener.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rpm_core.envelope import ReadingBatch, seal_batch
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.topics import Topic
from tests.rpm_core.envelope_fixtures import AGENT, ORG, T, batch

AGENT_KEYS = AgentKeys.generate()
SERVER = ServerKey.generate()


def sealed(b: ReadingBatch | None = None) -> tuple[Topic, bytes]:
    return seal_batch(b or batch(), agent=AGENT_KEYS, server=SERVER.public())


def test_broker_sees_no_plaintext() -> None:
    _, data = sealed()
    for secret in (b"heart_rate", b"F0:12:34:56:78:9A", b"contact", AGENT.encode()):
        assert secret not in data


def test_every_message_uses_fresh_randomness() -> None:
    (_, a), (_, b) = sealed(), sealed()
    assert a != b


def test_batch_rejects_readings_of_another_agent() -> None:
    r = batch(1, agent="agt-0002").readings
    with pytest.raises(ValueError):
        ReadingBatch(ORG, AGENT, T + timedelta(seconds=1), r)

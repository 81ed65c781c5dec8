"""The test vectors published in docs/envelope.md, checked byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ingest.opener import EnvelopeOpener
from ingest.rows import decode_batch
from rpm_core.envelope import encode_batch, external_aad, seal_envelope
from rpm_core.keys import AgentKeys, Ed25519Key, ServerKey, X25519Key
from rpm_core.topics import Topic

DOC = Path(__file__).resolve().parents[2] / "docs" / "envelope.md"


def _doc() -> str:
    return DOC.read_text()


def _keys() -> tuple[AgentKeys, ServerKey]:
    text = _doc()
    hexes = {
        name: bytes.fromhex(re.search(rf"{name} `([0-9a-f]{{64}})`", text)[1])  # type: ignore[index]
        for name in ("agent Ed25519", "agent X25519", "server X25519", "server Ed25519")
    }
    agent = AgentKeys(
        Ed25519Key(hexes["agent Ed25519"]),
        X25519Key(hexes["agent X25519"]),
    )
    server = ServerKey(
        X25519Key(hexes["server X25519"]),
        Ed25519Key(hexes["server Ed25519"]),
    )
    return agent, server


def _vectors() -> list[dict[str, Any]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", _doc(), re.S)]


def test_doc_publishes_vectors() -> None:
    assert len(_vectors()) >= 2


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_sealing_reproduces_the_published_bytes(vector: dict[str, Any]) -> None:
    agent, server = _keys()
    topic = Topic.parse(vector["topic"])
    assert external_aad(topic).hex() == vector["external_aad"]
    body = bytes.fromhex(vector["body"])
    sealed = seal_envelope(
        body,
        topic=topic,
        agent=agent,
        server=server.public(),
        nonce=bytes.fromhex(vector["nonce"]),
        party_u_nonce=bytes.fromhex(vector["party_u_nonce"]),
    )
    assert sealed.hex() == vector["sealed"]


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_opening_the_published_bytes_gives_the_published_readings(vector: dict[str, Any]) -> None:
    agent, server = _keys()
    topic = Topic.parse(vector["topic"])
    sealed = bytes.fromhex(vector["sealed"])
    opener = EnvelopeOpener({server.kid: server})  # the server's side (ingest.opener)
    body = opener.open(sealed, topic=topic, agent=agent.public())
    assert body.hex() == vector["body"]
    batch = opener.open_batch(sealed, topic=topic, agent=agent.public())
    got = [
        {
            "seq": r.seq,
            "device_id": r.device_id,
            "metric": r.metric,
            "value": r.value,
            "measured_at": r.measured_at.isoformat(),
            "device_time": r.device_time,
            "flags": sorted(r.flags),
        }
        for r in batch.readings
    ]
    assert got == vector["readings"]
    assert [[g.first, g.last] for g in batch.gaps] == vector["gaps"]
    assert encode_batch(decode_batch(body, topic=topic)).hex() == vector["body"]

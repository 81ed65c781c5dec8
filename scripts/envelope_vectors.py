"""Print the test vectors of docs/envelope.md (run after a deliberate format change, then paste).

``tests/rpm_core/test_envelope_vectors.py`` checks the published vectors byte for byte.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rpm_core.envelope import ReadingBatch, encode_batch, external_aad, seal_batch
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, Ed25519Key, ServerKey, X25519Key
from rpm_core.reading import Reading, SeqRange

AGENT_SIGN = bytes(range(0, 32))
AGENT_KEX = bytes(range(32, 64))
SERVER_KEX = bytes(range(64, 96))
SERVER_SIGN = bytes(range(96, 128))


def keys() -> tuple[AgentKeys, ServerKey]:
    agent = AgentKeys(Ed25519Key(AGENT_SIGN), X25519Key(AGENT_KEX))
    server = ServerKey(X25519Key(SERVER_KEX), Ed25519Key(SERVER_SIGN))
    return agent, server


def vectors() -> list[dict[str, object]]:
    org, agent = org_id("clinic-1"), agent_id("agt-0001")
    t = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    batch1 = ReadingBatch(
        org,
        agent,
        t,
        (
            Reading(
                agent_id=agent,
                device_id="F0:12:34:56:78:9A",
                seq=41,
                metric="bp_systolic",
                value=138.0,
                measured_at=t,
                device_time="2026-03-01T09:29:58",
                flags=frozenset({"irregular_pulse"}),
            ),
            Reading(
                agent_id=agent,
                device_id="F0:12:34:56:78:9A",
                seq=42,
                metric="bp_diastolic",
                value=88.0,
                measured_at=t,
                device_time="2026-03-01T09:29:58",
            ),
            Reading(agent_id=agent, device_id="C4:00:11:22:33:44", seq=43, metric="spo2", value=94.0, measured_at=t),
        ),
        (SeqRange(first=30, last=31),),
    )
    batch2 = ReadingBatch(org, agent, t, (), ())
    out = []
    for i, batch in enumerate((batch1, batch2), start=1):
        agent_keys, server = keys()
        nonce = bytes([i]) * 12
        party_u = bytes([0x40 + i]) * 32
        topic, sealed = seal_batch(batch, agent=agent_keys, server=server.public(), nonce=nonce, party_u_nonce=party_u)
        out.append(
            {
                "name": f"vector-{i}",
                "topic": str(topic),
                "nonce": nonce.hex(),
                "party_u_nonce": party_u.hex(),
                "external_aad": external_aad(topic).hex(),
                "body": encode_batch(batch).hex(),
                "readings": [
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
                ],
                "gaps": [[g.first, g.last] for g in batch.gaps],
                "sealed": sealed.hex(),
            }
        )
    return out


if __name__ == "__main__":
    for v in vectors():
        print(f"### {v['name']}\n\n```json\n{json.dumps(v, indent=2)}\n```\n")

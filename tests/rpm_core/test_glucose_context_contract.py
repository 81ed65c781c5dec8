"""The glucose measurement context needs no format change: HbA1c is a catalogue metric and the meal
travels as ordinary flags, through the envelope and through ingest's fast path alike."""

from __future__ import annotations

from rpm_core.envelope import ReadingBatch, decode_values, open_batch, open_envelope, seal_batch
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.reading import Reading
from tests.rpm_core.envelope_fixtures import AGENT, ORG, T

AGENT_KEYS = AgentKeys.generate()
SERVER = ServerKey.generate()
MEALS = ("meal_preprandial", "meal_postprandial", "meal_fasting", "meal_casual", "meal_bedtime")


def _reading(seq: int, metric: str, value: float, flags: set[str]) -> Reading:
    return Reading(
        agent_id=AGENT,
        device_id="E0:00:00:00:00:06",
        seq=seq,
        metric=metric,
        value=value,
        measured_at=T,
        device_time="2026-03-01T07:00:00",
        flags=frozenset(flags),
    )


def test_meal_flags_and_hba1c_survive_the_envelope_and_ingests_fast_path() -> None:
    readings = [
        _reading(i * 2 + 1, "glucose", 110.0, {"sample:capillary_plasma", "context_follows", meal})
        for i, meal in enumerate(MEALS)
    ]
    readings += [_reading(11, "hba1c", 6.8, {"meal_fasting"}), _reading(12, "glucose", 95.0, {"context_missing"})]
    batch = ReadingBatch(ORG, AGENT, T, tuple(readings))
    topic, data = seal_batch(batch, agent=AGENT_KEYS, server=SERVER.public())
    keyring = {SERVER.kid: SERVER}
    assert open_batch(data, topic=topic, server_keys=keyring, agent=AGENT_KEYS.public()) == batch
    body = open_envelope(data, topic=topic, server_keys=keyring, agent=AGENT_KEYS.public())
    rows = decode_values(body, topic=topic).rows  # what ingest stores, flags as text[]
    assert [(row[2], row[3], row[6]) for row in rows] == [(r.metric, r.value, sorted(r.flags)) for r in readings]
    assert readings[-2].unit == "%"

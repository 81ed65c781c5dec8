"""FHIR R4 over HTTP: Patient and Device reads, the Observation searchset with cursor pages, the
NDJSON export; every resource validated with fhir.resources; access and audit as the API's."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from clinician_api.fhir import device_fhir_id, gateway_fhir_id
from tests.clinician_api.fhir.conformance import validate
from tests.clinician_api.world import T0, add_readings, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
FHIR = "/fhir/r4"
DEVICE = "00:1C:05:FF:E8:74"


def _fleet(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO agents (agent_id, org_id) VALUES ('agent-1', 'o1')")
        conn.execute(
            "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) "
            "VALUES ('agent-1', 'o1', 'p1', %s)",
            (T0 - timedelta(days=30),),
        )
        conn.execute(
            "INSERT INTO devices (device_id, org_id, agent_id, profile, manufacturer, model, battery_pct, "
            "last_seen_at) VALUES (%s, 'o1', 'agent-1', 'blood_pressure', 'Acme', 'BP-1', 80, %s)",
            (DEVICE, T0),
        )


def _readings(url: str, n: int) -> None:
    """``n`` cuff measurements (systolic, diastolic, mean: one panel each) and ``n`` SpO2 readings."""
    for i in range(n):
        t = T0 - timedelta(hours=n - i)
        add_readings(url, "o1", "p1", "bp_systolic", [(t, 120.0 + i)])
        add_readings(url, "o1", "p1", "bp_diastolic", [(t, 80.0)])
        add_readings(url, "o1", "p1", "bp_mean", [(t, 93.0)])
        add_readings(url, "o1", "p1", "spo2", [(t + timedelta(minutes=1), 97.0)])


async def test_patient_and_device_reads_validate(client, world) -> None:
    _fleet(world.url)
    await sign_in(client, world["c1"], T0)
    r = await client.get(f"{FHIR}/Patient/p1")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    patient = validate(r.json())
    assert patient.id == "p1"
    device = validate((await client.get(f"{FHIR}/Device/{device_fhir_id(DEVICE)}")).json())
    assert device.manufacturer == "Acme"
    gateway = (await client.get(f"{FHIR}/Device/{gateway_fhir_id('agent-1')}")).json()
    validate(gateway)
    assert gateway["id"] == "phg-agent-1"


async def test_observation_search_pages_with_cursors_and_never_splits_a_panel(client, world) -> None:
    _fleet(world.url)
    _readings(world.url, 5)
    await sign_in(client, world["c1"], T0)
    seen: list[str] = []
    url: str | None = f"{FHIR}/Observation?patient=Patient/p1&_count=3"
    pages = 0
    while url is not None:
        before = audit_head(world.url)
        bundle = (await client.get(url)).json()
        assert [r[1] for r in audit_rows(world.url, since=before)] == ["fhir.observation_search"]
        validate(bundle)
        pages += 1
        for entry in bundle["entry"]:
            obs = validate(entry["resource"])
            seen.append(obs.id)
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].removeprefix("http://localhost:8000") if nxt else None
    assert len(seen) == len(set(seen)) == 10  # 5 panels + 5 SpO2, each once
    assert sum(1 for s in seen if s.startswith("bp.")) == 5
    assert pages == 4


async def test_code_and_date_parameters(client, world) -> None:
    _fleet(world.url)
    _readings(world.url, 4)
    await sign_in(client, world["c1"], T0)
    panels = (
        await client.get(f"{FHIR}/Observation", params={"patient": "p1", "code": "http://loinc.org|85354-9"})
    ).json()
    assert len(panels["entry"]) == 4
    assert {e["resource"]["code"]["coding"][0]["code"] for e in panels["entry"]} == {"85354-9"}
    since = (T0 - timedelta(hours=2)).isoformat()
    recent = (await client.get(f"{FHIR}/Observation", params=[("patient", "p1"), ("date", f"ge{since}")])).json()
    assert len(recent["entry"]) == 4  # the last two measurements: two panels, two SpO2
    nothing = (await client.get(f"{FHIR}/Observation", params={"patient": "p1", "code": "12345-6"})).json()
    assert nothing["entry"] == []
    bad = await client.get(f"{FHIR}/Observation", params={"patient": "p1", "date": "yesterday"})
    assert bad.status_code == 422


async def test_everything_export_streams_ndjson(client, world) -> None:
    _fleet(world.url)
    _readings(world.url, 3)
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    r = await client.get(f"{FHIR}/Patient/p1/$everything")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    for resource in lines:
        validate(resource)
    kinds = [res["resourceType"] for res in lines]
    assert kinds[:3] == ["Patient", "Device", "Device"]
    assert kinds.count("Observation") == 3 + 3 + 1  # panels, SpO2, the battery level
    assert [r[1] for r in audit_rows(world.url, since=before)] == ["fhir.export"]


@pytest.mark.parametrize("outsider", ["c2", "x1"])
async def test_fhir_reads_hide_patients_outside_the_panel(client, world, outsider) -> None:
    _fleet(world.url)
    await sign_in(client, world[outsider], T0)
    for path in (
        f"{FHIR}/Patient/p1",
        f"{FHIR}/Patient/p1/$everything",
        f"{FHIR}/Device/{device_fhir_id(DEVICE)}",
        f"{FHIR}/Device/phg-agent-1",
        f"{FHIR}/Observation?patient=p1",
    ):
        before = audit_head(world.url)
        r = await client.get(path)
        assert r.status_code == 404, path
        rows = audit_rows(world.url, since=before)
        assert [(row[2], row[4]) for row in rows] == [("denied", "p1")], path


async def test_a_patient_exports_their_own_record(client, world) -> None:
    _fleet(world.url)
    _readings(world.url, 1)
    await sign_in(client, world["pu1"], T0)
    assert (await client.get(f"{FHIR}/Patient/p1")).status_code == 200
    assert (await client.get(f"{FHIR}/Patient/p2")).status_code == 404
    for hostile in ("..", "p1.", "phd-", "Patient%2Fp2", "%00", "a" * 300, "p.C3.A9"):
        assert (await client.get(f"{FHIR}/Patient/{hostile}")).status_code in (404, 422)
        assert (await client.get(f"{FHIR}/Device/{hostile}")).status_code in (404, 422)

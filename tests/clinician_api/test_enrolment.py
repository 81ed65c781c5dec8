"""Enrolment and a patient's alert settings: demographics, conditions that seed the settings,
consent with date and version, the episode and its set-up; settings validated with the alert
config's models, versioned, audited, and used by a running engine without a restart."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import psycopg
import pytest

from alerts.engine import Engine
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from store import alerts as alert_store
from tests.clinician_api.world import T0, add_readings, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


def enrolment(world, **over) -> dict:
    body = {
        "patient_id": "new-1",
        "display_name": "Nadia Example",
        "mrn": "MRN-77",
        "birth_date": "1948-02-03",
        "sex": "female",
        "conditions": ["copd", "hypertension"],
        "consent": {"version": "rpm-2026-01", "decided_on": "2026-02-27", "method": "written"},
        "care_team_ids": [world.teams["t1"]],
    }
    body.update(over)
    return body


async def test_enrol_seeds_settings_from_conditions_and_opens_an_episode(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    r = await client.post(f"{API}/patients", json=enrolment(world))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["conditions"] == ["hypertension", "copd"]
    assert out["consent"]["version"] == "rpm-2026-01"
    assert out["consent"]["decided_on"] == "2026-02-27"
    assert out["episode"]["start_date"] == "2026-02-27"
    assert [t["team_id"] for t in out["care_teams"]] == [world.teams["t1"]]
    assert [(row[1], row[2], row[4]) for row in audit_rows(world.url, since=before)] == [
        ("patient.enrol", "success", "new-1")
    ]
    s = (await client.get(f"{API}/patients/new-1/settings")).json()
    assert s["settings"]["spo2_scale"] == 2
    assert s["settings"]["bp_goal"] == {"systolic": 130.0, "diastolic": 80.0}
    assert s["settings"]["expected_metrics"] == ["bp_diastolic", "bp_systolic", "heart_rate", "spo2"]
    assert s["spo2_scale"] == 2
    assert [b["value"] for b in s["bands"]["spo2"]] == [87, 85, 83, 83]  # NEWS2 scale 2
    # The new patient is on the team's panel at once.
    panel = (await client.get(f"{API}/patients")).json()
    assert "new-1" in [p["patient_id"] for p in panel["items"]]


async def test_enrolment_needs_consent_and_one_of_my_teams(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    no_consent = enrolment(world, consent={"decision": "withdrawn", "version": "v1", "decided_on": "2026-02-27"})
    r = await client.post(f"{API}/patients", json=no_consent)
    assert (r.status_code, r.json()["code"]) == (422, "no_consent")
    before = audit_head(world.url)
    r = await client.post(f"{API}/patients", json=enrolment(world, care_team_ids=[world.teams["t2"]]))
    assert (r.status_code, r.json()["code"]) == (422, "bad_team")
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("patient.enrol", "failed")]
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT count(*) FROM patients WHERE patient_id = 'new-1'").fetchone()[0] == 0
    r = await client.post(f"{API}/patients", json=enrolment(world, patient_id="p2"))
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    r = await client.post(f"{API}/patients", json=enrolment(world, settings={"thresholds": {"nonsense": []}}))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_settings")


async def test_roles_that_may_not_enrol_or_tune(client, world, new_client) -> None:
    await sign_in(client, world["pu1"], T0)
    assert (await client.post(f"{API}/patients", json=enrolment(world))).status_code == 403
    async with new_client() as cc:
        await sign_in(cc, world["cc1"], T0)
        s = (await cc.get(f"{API}/patients/p1/settings")).json()
        r = await cc.put(f"{API}/patients/p1/settings", json={"version": s["version"], "settings": {}})
        assert (r.status_code, r.json()["code"]) == (403, "role")  # care coordinators do not set thresholds


async def test_settings_are_validated_versioned_and_audited(client, world) -> None:
    await sign_in(client, world["n1"], T0)
    s = (await client.get(f"{API}/patients/p1/settings")).json()
    assert (s["version"], s["settings"], s["spo2_scale"]) == (1, {}, 1)
    bad = {"version": 1, "settings": {"thresholds": {"spo2": [{"op": "<=", "value": 90, "severity": "fatal"}]}}}
    before = audit_head(world.url)
    r = await client.put(f"{API}/patients/p1/settings", json=bad)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_settings")
    assert "thresholds.spo2" in r.json()["detail"]
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("settings.update", "failed")]
    unknown = await client.put(f"{API}/patients/p1/settings", json={"version": 1, "settings": {"colour": "red"}})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "invalid_settings")
    good = {"version": 1, "settings": {"thresholds": {"spo2": [{"op": "<=", "value": 90, "severity": "high"}]}}}
    r = await client.put(f"{API}/patients/p1/settings", json=good)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert [b["value"] for b in r.json()["bands"]["spo2"]] == [90]
    stale = await client.put(f"{API}/patients/p1/settings", json={**good, "version": 1})
    assert (stale.status_code, stale.json()["code"]) == (409, "conflict")
    with psycopg.connect(world.url) as conn:
        versions = conn.execute(
            "SELECT version FROM patient_settings_history WHERE patient_id = 'p1' ORDER BY version"
        ).fetchall()
    assert [v[0] for v in versions] == [2]  # p1 predates enrolment: its first stored version is 2


async def test_a_clinicians_choice_survives_a_change_of_conditions(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    await client.post(f"{API}/patients", json=enrolment(world, conditions=["copd"]))
    s = (await client.get(f"{API}/patients/new-1/settings")).json()
    assert s["settings"]["spo2_scale"] == 2
    # Adding diabetes moves the expected metrics and leaves the SpO2 scale alone.
    r = await client.patch(f"{API}/patients/new-1/enrolment", json={"conditions": ["copd", "diabetes"]})
    assert r.status_code == 200, r.text
    s = (await client.get(f"{API}/patients/new-1/settings")).json()
    assert s["settings"]["expected_metrics"] == ["glucose", "heart_rate", "spo2"]
    # The clinician sets the scale back to 1 on purpose; dropping COPD later keeps that choice.
    chosen = {**s["settings"], "spo2_scale": 1}
    r = await client.put(f"{API}/patients/new-1/settings", json={"version": s["version"], "settings": chosen})
    assert r.status_code == 200, r.text
    await client.patch(f"{API}/patients/new-1/enrolment", json={"conditions": ["diabetes"], "phone": "+1 555 0100"})
    s = (await client.get(f"{API}/patients/new-1/settings")).json()
    assert s["settings"]["spo2_scale"] == 1
    assert s["settings"]["expected_metrics"] == ["glucose"]
    e = (await client.get(f"{API}/patients/new-1/enrolment")).json()
    assert (e["conditions"], e["phone"]) == (["diabetes"], "+1 555 0100")


async def test_consent_history_and_setup(client, world, clock) -> None:
    await sign_in(client, world["c1"], T0)
    await client.post(f"{API}/patients", json=enrolment(world))
    clock.advance(300)
    r = await client.post(
        f"{API}/patients/new-1/consents",
        json={"decision": "withdrawn", "version": "rpm-2026-01", "decided_on": "2026-03-01", "method": "verbal"},
    )
    assert r.status_code == 201, r.text
    e = (await client.get(f"{API}/patients/new-1/enrolment")).json()
    assert e["consent"]["decision"] == "withdrawn"
    assert [c["decision"] for c in e["consent_history"]] == ["withdrawn", "granted"]
    future = await client.post(
        f"{API}/patients/new-1/consents", json={"version": "v2", "decided_on": "2027-01-01", "method": "written"}
    )
    assert future.status_code == 422
    setup = await client.post(f"{API}/patients/new-1/setup", json={})
    assert setup.status_code == 200, setup.text
    assert setup.json()["setup_by"] == world["c1"].user_id


async def test_the_running_engine_follows_a_settings_change_without_restart(client, world, clock) -> None:
    await sign_in(client, world["c1"], T0)
    settings = AlertsSettings(database_url=world.url, alerts_partitions=1, alerts_batch_limit=100)
    engine = Engine(settings, clock=clock, sink=RecordingSink())
    await asyncio.to_thread(engine.connect)
    try:
        await client.post(f"{API}/patients", json=enrolment(world, conditions=["copd"]))  # SpO2 scale 2
        t = T0 - timedelta(minutes=30)
        add_readings(world.url, "o1", "new-1", "spo2", [(t, 90.0), (t + timedelta(minutes=5), 90.0)])
        await asyncio.to_thread(_drain, engine, 2)
        with psycopg.connect(world.url) as conn:
            assert alert_store.list_alerts(conn, patient_id="new-1") == []  # 90 % is fine on scale 2
        s = (await client.get(f"{API}/patients/new-1/settings")).json()
        body = {"version": s["version"], "settings": {**s["settings"], "spo2_scale": 1}}
        assert (await client.put(f"{API}/patients/new-1/settings", json=body)).status_code == 200
        t2 = T0 - timedelta(minutes=10)
        add_readings(world.url, "o1", "new-1", "spo2", [(t2, 90.0), (t2 + timedelta(minutes=5), 90.0)])
        await asyncio.to_thread(_drain, engine, 4)
        with psycopg.connect(world.url) as conn:
            (alert,) = alert_store.list_alerts(conn, patient_id="new-1")
        assert (alert.rule, alert.severity) == ("threshold:spo2:low", "high")
    finally:
        await asyncio.to_thread(engine.close)


def _drain(engine: Engine, expected: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.stats.readings_seen < expected:
        assert time.monotonic() < deadline, f"engine saw {engine.stats.readings_seen} of {expected}"
        engine.run_once()
        time.sleep(0.01)

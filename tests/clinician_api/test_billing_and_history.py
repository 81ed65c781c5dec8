"""The monthly billing evidence over HTTP (JSON and CSV, admins only, audited with the patients it
lists), a patient's alert history with events and escalation steps, and the escalation policy."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.clinician_api.world import T0, add_alert, add_readings, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


async def _billable_patient(client, world) -> None:
    body = {
        "patient_id": "bill-1",
        "display_name": "Billable Patient",
        "conditions": ["hypertension"],
        "consent": {"version": "v1", "decided_on": "2026-02-01", "method": "written"},
        "care_team_ids": [world.teams["t1"]],
    }
    assert (await client.post(f"{API}/patients", json=body)).status_code == 201
    setup = await client.post(f"{API}/patients/bill-1/setup", json={"at": "2026-02-01T10:00:00+00:00"})
    assert setup.status_code == 200, setup.text
    days = [(datetime(2026, 2, d, 9, tzinfo=UTC), 120.0) for d in range(1, 17)]  # 16 days in period 0
    add_readings(world.url, "o1", "bill-1", "bp_systolic", days)
    call = {
        "kind": "interactive_communication",
        "started_at": "2026-03-10T15:00:00+00:00",
        "minutes": 22,
        "reason": "phone call recorded after the fact",
    }
    assert (await client.post(f"{API}/patients/bill-1/time-entries", json=call)).status_code == 201


async def test_billing_evidence_json_and_csv(client, world, clock, new_client) -> None:
    clock.set(NOW)
    await sign_in(client, world["c1"], NOW)
    await _billable_patient(client, world)
    assert (await client.get(f"{API}/billing/2026-03")).status_code == 403  # clinicians do not see billing
    async with new_client() as admin:
        await sign_in(admin, world["a1"], NOW)
        before = audit_head(world.url)
        report = (await admin.get(f"{API}/billing/2026-03")).json()
        rows = audit_rows(world.url, since=before)
        assert [(r[1], r[2]) for r in rows] == [("billing.read", "success")]
        with psycopg.connect(world.url) as conn:
            subjects = conn.execute("SELECT subjects FROM audit_log WHERE audit_id = %s", (rows[0][0],)).fetchone()[0]
        assert subjects == ["bill-1"]
        codes = {(r["code"], r["period_start"]): r for r in report["rows"]}
        assert report["as_of"] == "2026-03-20"
        assert codes[("99453", "2026-02-01")]["eligible"] is True
        assert codes[("99454", "2026-02-01")]["eligible"] is True
        assert codes[("99454", "2026-03-03")]["eligible"] is False  # the second period: no days yet
        assert codes[("99457", "2026-03-01")]["eligible"] is True
        assert codes[("99458", "2026-03-01")]["missing"] == "22 of 40 minutes"
        r = await admin.get(f"{API}/billing/2026-03", params={"format": "csv"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == 'attachment; filename="vigil-billing-o1-2026-03.csv"'
        table = list(csv.DictReader(io.StringIO(r.text)))
        assert {(t["code"], t["eligible"]) for t in table if t["period_start"] == "2026-02-01"} >= {
            ("99454", "true"),
            ("99453", "true"),
        }
        assert (await admin.get(f"{API}/billing/2026-13")).status_code == 422


async def test_billing_of_another_org_lists_none_of_ours(client, world, clock) -> None:
    clock.set(NOW)
    await sign_in(client, world["c1"], NOW)
    await _billable_patient(client, world)
    await sign_in(client, world["a2"], NOW)  # admin of o2
    report = (await client.get(f"{API}/billing/2026-03")).json()
    assert (report["org_id"], report["rows"]) == ("o2", [])


async def test_alert_history_shows_events_and_escalation_steps(client, world, clock) -> None:
    first = add_alert(world, "old", "o1", "p1", "high", opened=clock.now() - timedelta(days=3), rule="news2")
    second = add_alert(world, "new", "o1", "p1", "medium", opened=clock.now() - timedelta(hours=1))
    with psycopg.connect(world.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_actions (alert_id, org_id, patient_id, round, step, action, severity, due_at) "
            "VALUES (%s, 'o1', 'p1', 0, 0, 'notify_care_team', 'high', %s)",
            (first, clock.now() - timedelta(days=3)),
        )
    await sign_in(client, world["c1"], clock.now())
    await client.post(f"{API}/alerts/{first}/resolve", json={"note": "called, fine"})
    page = (await client.get(f"{API}/patients/p1/alerts", params={"limit": 1})).json()
    assert [a["alert_id"] for a in page["items"]] == [second]
    page2 = (await client.get(f"{API}/patients/p1/alerts", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    (old,) = page2["items"]
    assert (old["alert_id"], old["state"], old["resolution_note"]) == (first, "resolved", "called, fine")
    assert [e["type"] for e in old["events"]][-1] == "resolved"
    assert [(x["step"], x["action"]) for x in old["actions"]] == [(0, "notify_care_team")]
    assert page2["next_cursor"] is None
    resolved_only = (await client.get(f"{API}/patients/p1/alerts", params={"state": "resolved"})).json()
    assert [a["alert_id"] for a in resolved_only["items"]] == [first]
    await sign_in(client, world["pu1"], clock.now())
    assert (await client.get(f"{API}/patients/p1/alerts")).status_code == 403  # the care team's view


async def test_escalation_policy_is_validated_versioned_and_admin_only(client, world) -> None:
    await sign_in(client, world["a1"], T0)
    current = (await client.get(f"{API}/admin/escalation-policy")).json()
    assert (current["version"], current["default"]) == (None, True)
    bad = {"version": None, "policy": {"critical": [{"action": "notify_care_team"}]}}
    r = await client.put(f"{API}/admin/escalation-policy", json=bad)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_policy")
    good = {
        "version": None,
        "policy": {"critical": [{"action": "notify_care_team"}, {"action": "request_video_consult", "after_min": 10}]},
    }
    before = audit_head(world.url)
    r = await client.put(f"{API}/admin/escalation-policy", json=good)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("policy.update", "success")]
    stale = await client.put(f"{API}/admin/escalation-policy", json=good)
    assert (stale.status_code, stale.json()["code"]) == (409, "stale_version")
    assert (await client.put(f"{API}/admin/escalation-policy", json={**good, "version": 1})).json()["version"] == 2
    await sign_in(client, world["c1"], T0)
    assert (await client.get(f"{API}/admin/escalation-policy")).status_code == 403

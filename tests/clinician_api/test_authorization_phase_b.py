"""The authorisation matrix extended to the phase B routes: every route that takes an id answers a
user of another panel and of another organisation with the body of a real 404 and exactly one
denied audit row naming the real patient; every PHI call leaves exactly one audit row."""

from __future__ import annotations

from datetime import timedelta

import pytest
import pytest_asyncio

from tests.clinician_api.world import T0, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"
CONSENT = {"version": "v2", "decided_on": "2026-02-28", "method": "verbal"}
MANUAL = {"kind": "review", "started_at": (T0 - timedelta(hours=3)).isoformat(), "minutes": 5, "reason": "chart"}

# (method, path template, body): {pid} a patient of team t1, {eid} a time entry of c1 on that patient.
ROUTES = [
    ("GET", "/patients/{pid}/enrolment", None),
    ("PATCH", "/patients/{pid}/enrolment", {"phone": "+1 555 0199"}),
    ("POST", "/patients/{pid}/consents", CONSENT),
    ("POST", "/patients/{pid}/setup", {}),
    ("GET", "/patients/{pid}/settings", None),
    ("PUT", "/patients/{pid}/settings", {"version": 1, "settings": {}}),
    ("GET", "/patients/{pid}/alerts", None),
    ("GET", "/patients/{pid}/time-entries", None),
    ("POST", "/patients/{pid}/timer/start", {"kind": "review"}),
    ("POST", "/patients/{pid}/timer/stop", None),
    ("POST", "/patients/{pid}/time-entries", MANUAL),
    ("PATCH", "/time-entries/{eid}", {"minutes": 9}),
    ("DELETE", "/time-entries/{eid}", None),
]


def _strip(problem: dict) -> dict:
    return {k: v for k, v in problem.items() if k != "instance"}


@pytest_asyncio.fixture
async def entry_id(app, world, new_client) -> str:
    async with new_client("10.9.9.9") as author:
        await sign_in(author, world["c1"], T0)
        r = await author.post(f"{API}/patients/p1/time-entries", json=MANUAL)
        assert r.status_code == 201, r.text
        return str(r.json()["entry_id"])


@pytest.mark.parametrize("outsider", ["c2", "x1"])
@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
async def test_phase_b_routes_hide_objects_outside_the_panel_and_org(
    client, world, entry_id, outsider, method, template, body
) -> None:
    await sign_in(client, world[outsider], T0)
    missing = await client.request(
        method, API + template.format(pid="nobody", eid="00000000-0000-0000-0000-000000000000"), json=body
    )
    before = audit_head(world.url)
    r = await client.request(method, API + template.format(pid="p1", eid=entry_id), json=body)
    assert r.status_code == 404, r.text
    assert missing.status_code == 404
    assert _strip(r.json()) == _strip(missing.json())
    rows = audit_rows(world.url, since=before)
    assert len(rows) == 1, rows
    assert (rows[0][2], rows[0][3], rows[0][4]) == ("denied", "clinician", "p1")


async def test_hostile_ids_are_audited_404s(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    for raw in ("%00", "p1%0A", "²", "a" * 500, "00000000-0000-0000-0000-00000000000%00"):
        for path in (f"/patients/{raw}/settings", f"/time-entries/{raw}", f"/patients/{raw}/alerts"):
            before = audit_head(world.url)
            method = "PATCH" if path.startswith("/time-entries") else "GET"
            r = await client.request(method, API + path, json={"minutes": 1} if method == "PATCH" else None)
            assert r.status_code in (404, 422), (path, r.status_code)
            if r.status_code == 404:
                assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"], path


async def test_every_phase_b_phi_call_leaves_exactly_one_audit_row(client, world, clock) -> None:
    await sign_in(client, world["c1"], T0)
    calls = [
        ("GET", "/patients/p1/enrolment", None, "enrolment.read"),
        ("PATCH", "/patients/p1/enrolment", {"conditions": ["copd"]}, "patient.update"),
        ("POST", "/patients/p1/consents", CONSENT, "consent.grant"),
        ("POST", "/patients/p1/setup", {}, "episode.setup"),
        ("GET", "/patients/p1/settings", None, "settings.read"),
        ("PUT", "/patients/p1/settings", {"version": 2, "settings": {"spo2_scale": 1}}, "settings.update"),
        ("GET", "/patients/p1/alerts", None, "alerts.history"),
        ("POST", "/patients/p1/timer/start", {"kind": "care_planning"}, "time.timer_start"),
        ("POST", "/patients/p1/timer/stop", None, "time.timer_stop"),
        ("POST", "/patients/p1/time-entries", MANUAL, "time.manual_add"),
        ("GET", "/patients/p1/time-entries", None, "time.read"),
    ]
    for method, path, body, action in calls:
        before = audit_head(world.url)
        r = await client.request(method, API + path, json=body)
        assert r.status_code < 300, (path, r.text)
        rows = audit_rows(world.url, since=before)
        assert [(row[1], row[2], row[4]) for row in rows] == [(action, "success", "p1")], path

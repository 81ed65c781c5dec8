"""The authorisation matrix: every route that takes an id answers 404 (the body of a real 404) to a
user of another panel and of another organisation, and leaves exactly one denied audit row; a
patient sees only themselves; every PHI route leaves exactly one audit row per call."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from tests.clinician_api.world import T0, add_alert, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"

# (method, path template, body): {pid} a patient of team t1, {aid} an alert of that patient.
PHI_ROUTES = [
    ("GET", "/patients/{pid}", None),
    ("GET", "/patients/{pid}/vitals/spo2", None),
    ("GET", "/sparklines?patient={pid}", None),
    ("GET", "/alerts/{aid}", None),
    ("POST", "/alerts/{aid}/acknowledge", {}),
    ("POST", "/alerts/{aid}/assign", {"assignee": None}),
    ("POST", "/alerts/{aid}/snooze", {"minutes": 30}),
    ("POST", "/alerts/{aid}/resolve", {"note": "seen"}),
]
# Organisation objects: {uid} a user of o1, {tid} team t1, {pid} patient p1.
ADMIN_ROUTES = [
    ("GET", "/admin/users/{uid}", None),
    ("PATCH", "/admin/users/{uid}", {"display_name": "X"}),
    ("POST", "/admin/users/{uid}/sessions/revoke", None),
    ("POST", "/admin/users/{uid}/totp/reset", None),
    ("POST", "/admin/users/{uid}/password-reset", None),
    ("GET", "/admin/users/{uid}/tokens", None),
    ("POST", "/admin/users/{uid}/tokens", {"name": "t", "scopes": ["panel.read"]}),
    ("GET", "/admin/care-teams/{tid}", None),
    ("GET", "/admin/care-teams/{tid}/patients", None),
    ("PUT", "/admin/care-teams/{tid}/members/{uid}", None),
    ("DELETE", "/admin/care-teams/{tid}/members/{uid}", None),
    ("PUT", "/admin/care-teams/{tid}/patients/{pid}", None),
    ("DELETE", "/admin/care-teams/{tid}/patients/{pid}", None),
]


async def _call(client, method, path, body):
    return await client.request(method, API + path, json=body)


def _strip(problem: dict) -> dict:
    return {k: v for k, v in problem.items() if k != "instance"}


@pytest.fixture
def alert_p1(world) -> int:
    return add_alert(world, "a", "o1", "p1", "high", opened=T0 - timedelta(hours=1))


@pytest.mark.parametrize("outsider", ["c2", "x1"])
@pytest.mark.parametrize(("method", "template", "body"), PHI_ROUTES)
async def test_phi_routes_hide_objects_outside_the_panel_and_org(
    client, world, alert_p1, outsider, method, template, body
) -> None:
    await sign_in(client, world[outsider], T0)
    missing = await _call(client, method, template.format(pid="nobody", aid="999999"), body)
    before = audit_head(world.url)
    r = await _call(client, method, template.format(pid="p1", aid=alert_p1), body)
    assert r.status_code == 404
    assert missing.status_code == 404
    assert _strip(r.json()) == _strip(missing.json())
    rows = audit_rows(world.url, since=before)
    assert len(rows) == 1
    _, _action, outcome, role, patient, _object_type, object_id = rows[0]
    assert (outcome, role, patient) == ("denied", "clinician", "p1")
    assert object_id in ("p1", str(alert_p1))


@pytest.mark.parametrize(("method", "template", "body"), ADMIN_ROUTES)
async def test_admin_routes_hide_objects_of_another_org(client, world, method, template, body) -> None:
    await sign_in(client, world["a2"], T0)  # admin of o2
    before = audit_head(world.url)
    path = template.format(uid=world["n1"].user_id, tid=world.teams["t1"], pid="p1")
    r = await _call(client, method, path, body)
    assert r.status_code == 404, r.text
    rows = audit_rows(world.url, since=before)
    assert [(row[2], row[3]) for row in rows] == [("denied", "admin")]


async def test_break_glass_of_another_org_is_a_404(client, world) -> None:
    await sign_in(client, world["x1"], T0)
    before = audit_head(world.url)
    r = await client.post(f"{API}/patients/p1/break-glass", json={"reason": "emergency call from family"})
    assert r.status_code == 404
    assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]


async def test_a_patient_sees_only_themselves(client, world, alert_p1) -> None:
    await sign_in(client, world["pu1"], T0)
    panel = (await client.get(f"{API}/patients")).json()
    assert [p["patient_id"] for p in panel["items"]] == ["p1"]
    assert (await client.get(f"{API}/patients/p1")).json()["access"] == "self"
    assert (await client.get(f"{API}/patients/p1/vitals/spo2")).status_code == 200
    assert (await client.get(f"{API}/patients/p2")).status_code == 404
    assert (await client.get(f"{API}/sparklines", params={"patient": "p1"})).status_code == 200
    assert (await client.get(f"{API}/sparklines", params={"patient": ["p1", "p2"]})).status_code == 404
    before = audit_head(world.url)
    r = await client.get(f"{API}/alerts/{alert_p1}")
    assert (r.status_code, r.json()["code"]) == (403, "role")  # the alert queue is the care team's
    assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]
    assert (await client.get(f"{API}/admin/users")).status_code == 403


async def test_every_phi_call_leaves_exactly_one_audit_row(client, world, alert_p1) -> None:
    await sign_in(client, world["c1"], T0)
    calls = [
        ("GET", "/patients", None, "panel.read"),
        ("GET", "/patients/p1", None, "patient.read"),
        ("GET", "/patients/p1/vitals/spo2?resolution=raw", None, "vitals.read"),
        ("GET", "/sparklines?patient=p1&patient=p2", None, "sparklines.read"),
        ("GET", "/alerts", None, "alerts.read"),
        ("GET", f"/alerts/{alert_p1}", None, "alert.read"),
        ("POST", f"/alerts/{alert_p1}/assign", {"assignee": world["n1"].user_id}, "alert.assign"),
        ("POST", f"/alerts/{alert_p1}/snooze", {"minutes": 15}, "alert.snooze"),
        ("POST", f"/alerts/{alert_p1}/acknowledge", {"note": "calling"}, "alert.acknowledge"),
        ("POST", f"/alerts/{alert_p1}/resolve", {"note": "fine"}, "alert.resolve"),
        ("POST", f"/alerts/{alert_p1}/resolve", {"note": "again"}, "alert.resolve"),
    ]
    for method, path, body, action in calls:
        before = audit_head(world.url)
        r = await _call(client, method, path, body)
        rows = audit_rows(world.url, since=before)
        assert len(rows) == 1, (path, rows)
        expected = "failed" if r.status_code == 409 else "success"
        assert rows[0][1:3] == (action, expected), (path, r.text)


async def test_the_audit_row_and_the_change_commit_together(client, world, alert_p1) -> None:
    await sign_in(client, world["c1"], T0)
    await client.post(f"{API}/alerts/{alert_p1}/acknowledge", json={})
    before = audit_head(world.url)
    r = await client.post(f"{API}/alerts/{alert_p1}/snooze", json={"minutes": 10})
    assert r.status_code == 200
    with psycopg.connect(world.url) as conn:
        events = conn.execute(
            "SELECT type FROM alert_events WHERE alert_id = %s ORDER BY event_id", (alert_p1,)
        ).fetchall()
    assert [e[0] for e in events][-1] == "snoozed"
    assert audit_rows(world.url, since=before)[0][1] == "alert.snooze"


async def test_roles_without_the_permission_are_refused_and_audited(client, world, alert_p1) -> None:
    await sign_in(client, world["cc1"], T0)  # care coordinators assign but do not acknowledge
    assert (await client.post(f"{API}/alerts/{alert_p1}/assign", json={"assignee": None})).status_code == 200
    before = audit_head(world.url)
    r = await client.post(f"{API}/alerts/{alert_p1}/acknowledge", json={})
    assert (r.status_code, r.json()["code"]) == (403, "role")
    assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]
    assert (await client.get(f"{API}/admin/care-teams")).status_code == 403


async def test_nobody_sets_their_own_role_or_org(client, world) -> None:
    a1 = world["a1"]
    await sign_in(client, a1, T0)
    r = await client.patch(f"{API}/admin/users/{a1.user_id}", json={"role": "clinician"})
    assert (r.status_code, r.json()["code"]) == (403, "self_change")
    r = await client.patch(f"{API}/admin/users/{world['c1'].user_id}", json={"org_id": "o2"})
    assert r.status_code == 422  # not a field anyone can set
    r = await client.post(
        f"{API}/admin/users", json={"email": "new@o1.test", "display_name": "N", "role": "nurse", "org_id": "o2"}
    )
    assert r.status_code == 422
    r = await client.post(f"{API}/admin/users", json={"email": "new@o1.test", "display_name": "N", "role": "nurse"})
    assert r.status_code == 201
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT org_id FROM users WHERE email = 'new@o1.test'").fetchone()[0] == "o1"


async def test_an_admin_cannot_create_a_patient_account_for_another_orgs_patient(client, world) -> None:
    await sign_in(client, world["a1"], T0)
    body = {"email": "pq@o1.test", "display_name": "Q", "role": "patient", "patient_id": "q1", "password": "x" * 14}
    r = await client.post(f"{API}/admin/users", json=body)
    assert (r.status_code, r.json()["code"]) == (422, "unknown_patient")


async def test_break_glass_opens_a_patient_for_a_while_audited_and_flagged_to_admins(
    client, new_client, world, clock
) -> None:
    await sign_in(client, world["c2"], T0)
    assert (await client.get(f"{API}/patients/p1")).status_code == 404
    before = audit_head(world.url)
    r = await client.post(
        f"{API}/patients/p1/break-glass", json={"reason": "covering the on-call shift", "minutes": 20}
    )
    assert r.status_code == 201
    assert audit_rows(world.url, since=before)[0][1:5] == ("break_glass.grant", "success", "clinician", "p1")
    detail = await client.get(f"{API}/patients/p1")
    assert detail.status_code == 200
    assert detail.json()["access"] == "break_glass"
    with psycopg.connect(world.url) as conn:
        flagged = conn.execute(
            "SELECT channel, params FROM notification_outbox "
            "WHERE kind = 'break_glass_review' AND recipient_user_id = %s",
            (world["a1"].user_id,),
        ).fetchall()
    assert sorted(c for c, _ in flagged) == ["email", "in_app"]
    assert "p1" not in str(flagged)
    async with new_client() as admin:
        await sign_in(admin, world["a1"], clock.now())
        grants = (await admin.get(f"{API}/admin/break-glass")).json()["items"]
        assert [(g["patient_id"], g["reason"]) for g in grants] == [("p1", "covering the on-call shift")]
        reviewed = await admin.post(f"{API}/admin/break-glass/{grants[0]['grant_id']}/review")
        assert reviewed.json()["reviewed_by"] == world["a1"].user_id
        assert (await admin.get(f"{API}/admin/break-glass")).json()["items"] == []
    clock.advance(10 * 60)
    assert (await client.get(f"{API}/patients/p1")).status_code == 200
    clock.advance(10 * 60)  # the grant has run out (the session has not)
    assert (await client.get(f"{API}/patients/p1")).status_code == 404


async def test_break_glass_needs_a_reason_and_the_role(client, world) -> None:
    await sign_in(client, world["c2"], T0)
    assert (await client.post(f"{API}/patients/p1/break-glass", json={"reason": "x"})).status_code == 422
    await sign_in(client, world["cc1"], T0)
    r = await client.post(f"{API}/patients/p3/break-glass", json={"reason": "long enough reason"})
    assert r.status_code == 403


HOSTILE_IDS = ["x'; DROP TABLE patients; --", "../../etc/passwd", "%00", "a" * 300, "١٢", "²", "-1", "9" * 30, "1e9"]


@pytest.mark.parametrize("raw", HOSTILE_IDS)
async def test_hostile_ids_are_a_plain_404_and_audited(client, world, raw) -> None:
    from urllib.parse import quote

    await sign_in(client, world["c1"], T0)
    for template in ("/patients/{}", "/alerts/{}", "/alerts/{}/acknowledge"):
        before = audit_head(world.url)
        method = "POST" if template.endswith("acknowledge") else "GET"
        r = await client.request(
            method, API + template.format(quote(raw, safe="")), json={} if method == "POST" else None
        )
        assert r.status_code == 404, (template, raw, r.text)
        # an id with a slash matches no route at all (the router's 404: nothing was looked up)
        expected = [] if "/" in raw else ["denied"]
        assert [row[2] for row in audit_rows(world.url, since=before)] == expected


@pytest.mark.parametrize(
    "raw", ["00000000000000000000000000000000----", "{12345678-1234-5678-1234-567812345678}", "x" * 36]
)
async def test_malformed_uuids_in_admin_and_session_routes_are_404s(client, world, raw) -> None:
    await sign_in(client, world["a1"], T0)
    for method, path in (
        ("GET", f"/admin/users/{raw}"),
        ("DELETE", f"/auth/sessions/{raw}"),
        ("DELETE", f"/admin/tokens/{raw}"),
        ("POST", f"/admin/break-glass/{raw}/review"),
        ("GET", f"/admin/care-teams/{raw}"),
    ):
        before = audit_head(world.url)
        r = await client.request(method, API + path)
        assert r.status_code == 404, (path, r.text)
        assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]

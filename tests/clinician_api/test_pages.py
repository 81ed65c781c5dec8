"""The dashboard's pages through HTTP: redirects to sign-in, one audit row per page or fragment
(they call the API's own route functions), the same 404 for a missing and a hidden patient,
(test_assets.py checks what the CSP lets run)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clinician_api.middleware import CSP
from tests.clinician_api.world import T0, add_alert, add_readings, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio


async def test_signed_out_pages_redirect_to_sign_in(client) -> None:
    r = await client.get("/panel")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=%2Fpanel")
    r = await client.get("/ui/alerts/rows", headers={"HX-Request": "true"})
    assert (r.status_code, r.headers["hx-redirect"]) == (204, "/login?next=%2Fui%2Falerts%2Frows")
    login = await client.get("/login")
    assert login.status_code == 200
    assert login.headers["content-security-policy"] == CSP
    assert '<form id="password-form"' in login.text
    api = await client.get("/api/v1/patients")
    assert api.headers["content-type"] == "application/problem+json"  # the API still speaks problem+json


async def test_pages_and_fragments_leave_one_audit_row_each(client, world) -> None:
    add_readings(world.url, "o1", "p1", "spo2", [(T0 - timedelta(hours=h), 95.0) for h in range(1, 30)])
    alert = add_alert(world, "a", "o1", "p1", "high", opened=T0 - timedelta(hours=2))
    await sign_in(client, world["c1"], T0)
    for path, action in (
        ("/panel", "panel.read"),
        ("/ui/panel/sparklines?patient=p1&patient=p2", "sparklines.read"),
        ("/patients/p1", "patient.read"),
        ("/alerts", "alerts.read"),
        ("/ui/alerts/rows", "alerts.read"),
        ("/ui/patients/p1/alerts", "alerts.history"),
        ("/ui/patients/p1/settings", "settings.read"),
        ("/ui/patients/p1/time", "time.read"),
    ):
        before = audit_head(world.url)
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert r.headers["cache-control"] == "no-store"
        assert [row[1:3] for row in audit_rows(world.url, since=before)] == [(action, "success")], path
    panel = (await client.get("/panel")).text
    assert "Name p1" in panel
    assert 'id="spark-0"' in panel  # the sparklines come after the table, in one call for the page
    assert "/ui/panel/sparklines?patient=p1&amp;patient=p2" in panel
    sparks = (await client.get("/ui/panel/sparklines", params={"patient": ["p1", "p2"]})).text
    assert 'id="spark-0" hx-swap-oob="innerHTML"' in sparks
    assert "<polyline" in sparks  # the 7-day sparkline, drawn on the server
    rows = (await client.get("/ui/alerts/rows")).text
    assert f'data-alert="{alert}"' in rows
    assert 'data-action="acknowledge"' in rows


async def test_a_hidden_patient_page_is_the_same_404_as_a_missing_one(client, world) -> None:
    await sign_in(client, world["c2"], T0)
    hidden = await client.get("/patients/p1")
    missing = await client.get("/patients/nobody")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text
    assert (await client.get("/billing")).status_code == 403  # a clinician has no billing page


async def test_admin_pages(client, world) -> None:
    await sign_in(client, world["a1"], T0)
    policy = await client.get("/admin/policy")
    assert policy.status_code == 200
    assert "request_video_consult" in policy.text
    fleet = await client.get("/admin/fleet")
    assert fleet.status_code == 200
    assert 'id="token-form"' in fleet.text
    billing = await client.get("/billing", params={"month": "2026-03"})
    assert billing.status_code == 200
    assert 'href="/api/v1/billing/2026-03?format=csv"' in billing.text

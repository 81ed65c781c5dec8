"""The acknowledgement link end to end: the escalation emails the nurse a link, the nurse signs in
and taps twice, the alert is acknowledged (via link, by the nurse), its escalation sends nothing
more; the link cannot be reused, expires, and is refused (404 + one denied audit row) to another
signed-in user and on another alert's address. The API runs in-process (httpx over ASGI)
on the same ManualClock as the worker and the escalation; the blocking work (escalation, worker,
database reads) runs in threads, off the event loop."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import psycopg
import pyotp
import pytest
import pytest_asyncio

from clinician_api.app import create_app
from consult.notify.links import AckClaim, AckLinkSigner
from consult.notify.timeline import alert_timeline
from store import alerts as alert_store
from tests.clinician_api.conftest import settings_for
from tests.clinician_api.world import PASSWORD, audit_rows
from tests.consult.notify.conftest import escalate, open_alert

ACK = re.compile(r"https://vigil\.test(/ack/\d+/[A-Za-z0-9_-]+)")


pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def api(world, clock):
    app = create_app(settings_for(world.url), clock=clock)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 50000))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def sign_in(client: httpx.AsyncClient, acct, clock) -> None:
    client.cookies.clear()
    r = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    r = await client.post("/api/v1/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).at(clock.now())})
    assert r.status_code == 200, r.text
    del client.headers["x-csrf-token"]  # the page's form carries it from now on


async def tap_twice(client: httpx.AsyncClient, path: str) -> httpx.Response:
    page = await client.get(path)
    if page.status_code != 200:
        return page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return await client.post(path, data={"csrf_token": csrf})


def off_loop(fn, *args):
    return asyncio.to_thread(fn, *args)


def state(url: str, alert_id: int) -> str:
    with psycopg.connect(url) as conn:
        return alert_store.get_alert(conn, alert_id).state


def emailed_link(smtp, acct) -> str:
    (m,) = [m for m in smtp.received if m.to == (acct.email,) and "/ack/" in m.body]
    return ACK.search(m.body).group(1)


async def test_the_link_acknowledges_in_two_taps_and_stops_the_escalation(world, worker, smtp, clock, api) -> None:
    alert = await off_loop(open_alert, world.url, "p1", "critical")
    await off_loop(escalate, world.url, clock.now())
    await off_loop(worker.run_once)
    path = emailed_link(smtp, world["n1"])
    before = smtp.count()

    signed_out = await api.get(path)
    assert signed_out.status_code == 401
    assert "/login?next=/ack/" in signed_out.text

    await sign_in(api, world["n1"], clock)
    clock.advance(60)
    page = await api.get(path)
    assert page.status_code == 200
    assert "<form" in page.text
    assert "Acknowledge" in page.text
    done = await tap_twice(api, path)
    assert done.status_code == 200, done.text
    assert "escalation has stopped" in done.text

    with psycopg.connect(world.url) as conn:  # a test's own reads (not the code under test)
        row = alert_store.get_alert(conn, alert)
        assert (row.state, row.acknowledged_by) == ("acknowledged", world["n1"].user_id)
        (ack,) = [e for e in alert_store.alert_events(conn, alert) if e.type == "acknowledged"]
        assert ack.data["via"] == "link"
    steps = await off_loop(_timeline, world.url, alert)
    assert ("acknowledged", world["n1"].user_id, "link") in [
        (s.step, s.detail.get("by"), s.detail.get("via")) for s in steps
    ]

    # The walk would page the backup at 15 minutes and request a consult at 30: nothing more.
    clock.advance(45 * 60)
    assert await off_loop(escalate, world.url, clock.now()) == 0
    await off_loop(worker.run_once)
    assert smtp.count() == before
    with psycopg.connect(world.url) as conn:
        assert [a.action for a in alert_store.alert_actions(conn, alert)] == ["notify_care_team", "message_patient"]

    await sign_in(api, world["n1"], clock)  # the session went idle meanwhile
    again = await tap_twice(api, path)
    assert again.status_code == 410
    assert "used already" in again.text


async def test_the_link_is_bound_to_its_recipient_and_its_alert(world, worker, smtp, clock, api) -> None:
    alert = await off_loop(open_alert, world.url, "p1", "critical")
    other = await off_loop(open_alert, world.url, "p2", "critical")
    await off_loop(escalate, world.url, clock.now())
    await off_loop(worker.run_once)
    paths = [ACK.search(m.body).group(1) for m in smtp.received if m.to == (world["n1"].email,)]
    assert len(paths) == 2  # one link per alert
    mine = next(p for p in paths if p.startswith(f"/ack/{alert}/"))
    token = mine.rsplit("/", 1)[1]

    await sign_in(api, world["c1"], clock)  # a clinician of the same team: may see the alert, not use her link
    head = _audit_head(world.url)
    r = await api.get(mine)
    assert r.status_code == 404
    body_404 = r.text
    r = await api.post(mine, data={"csrf_token": "x"})
    assert r.status_code in (403, 404)
    assert state(world.url, alert) == "open"

    await sign_in(api, world["n1"], clock)
    wrong_alert = await api.get(f"/ack/{other}/{token}")  # her link, another alert's address
    assert wrong_alert.status_code == 404
    assert wrong_alert.text == body_404
    forged = AckLinkSigner.from_secret("another-secret-" + "y" * 32).token(
        AckClaim("00000000-0000-4000-8000-000000000000", alert, world["n1"].user_id, clock.now() + timedelta(hours=1))
    )
    assert (await api.get(f"/ack/{alert}/{forged}")).status_code == 404
    assert (await api.get(f"/ack/{alert}/{token[:-2]}xx")).status_code == 404
    denied = [r for r in audit_rows(world.url, since=head) if r[2] == "denied"]
    assert [(r[1], r[3], r[5], r[6]) for r in denied] == [
        ("alert.acknowledge", "clinician", "alert", str(alert)),
        ("alert.acknowledge", "nurse", "alert", str(other)),
        ("alert.acknowledge", "nurse", "alert", str(alert)),
        ("alert.acknowledge", "nurse", "alert", str(alert)),
    ]
    assert denied[0][4] == "p1"  # the accounting names the patient behind the refused id
    assert state(world.url, alert) == "open"
    assert state(world.url, other) == "open"


async def test_the_link_expires(world, worker, smtp, clock, api) -> None:
    alert = await off_loop(open_alert, world.url, "p1", "high")
    await off_loop(escalate, world.url, clock.now())
    await off_loop(worker.run_once)
    path = emailed_link(smtp, world["n1"])
    clock.advance(24 * 3600)  # notify_ack_link_ttl_s (default one day)
    await sign_in(api, world["n1"], clock)
    head = _audit_head(world.url)
    r = await tap_twice(api, path)
    assert r.status_code == 410
    assert "expired" in r.text
    assert state(world.url, alert) == "open"
    assert [(r[1], r[2]) for r in audit_rows(world.url, since=head)] == [("alert.acknowledge", "failed")]


def _timeline(url: str, alert_id: int):
    with psycopg.connect(url) as conn:
        return alert_timeline(conn, alert_id)


def _audit_head(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT coalesce(max(audit_id), 0) FROM audit_log").fetchone()[0])

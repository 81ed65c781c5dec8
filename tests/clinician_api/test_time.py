"""Time tracking: the timer (one per user, whole minutes), manual entries with a reason, edits and
deletions by the author within a day (previous versions kept), each call audited."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from tests.clinician_api.world import T0, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


async def test_the_timer_counts_whole_minutes_and_runs_once_per_user(client, world, clock) -> None:
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    r = await client.post(f"{API}/patients/p1/timer/start", json={"kind": "interactive_communication"})
    assert r.status_code == 201, r.text
    running = r.json()
    assert (running["minutes"], running["ended_at"]) == (None, None)
    again = await client.post(f"{API}/patients/p2/timer/start", json={"kind": "review"})
    assert (again.status_code, again.json()["code"]) == (409, "timer_running")
    assert running["entry_id"] in again.json()["detail"]
    listing = (await client.get(f"{API}/patients/p1/time-entries")).json()
    assert listing["running"]["entry_id"] == running["entry_id"]
    assert (await client.post(f"{API}/patients/p2/timer/stop")).json()["code"] == "no_timer"
    clock.advance(7 * 60 + 59)
    stopped = (await client.post(f"{API}/patients/p1/timer/stop")).json()
    assert (stopped["minutes"], stopped["capture"]) == (7, "timer")  # 7 min 59 s: 7 whole minutes
    actions = [row[1:3] for row in audit_rows(world.url, since=before)]
    assert actions == [
        ("time.timer_start", "success"),
        ("time.timer_start", "failed"),
        ("time.read", "success"),
        ("time.timer_stop", "failed"),
        ("time.timer_stop", "success"),
    ]
    listing = (await client.get(f"{API}/patients/p1/time-entries", params={"month": "2026-03"})).json()
    assert (listing["month_minutes"], listing["running"], len(listing["items"])) == (7, None, 1)


async def test_manual_entries_need_a_reason_and_a_past_time(client, world) -> None:
    await sign_in(client, world["n1"], T0)
    body = {"kind": "care_planning", "started_at": (T0 - timedelta(hours=2)).isoformat(), "minutes": 25}
    assert (await client.post(f"{API}/patients/p1/time-entries", json=body)).status_code == 422  # no reason
    future = {**body, "started_at": (T0 - timedelta(minutes=10)).isoformat(), "reason": "phone call, no laptop"}
    r = await client.post(f"{API}/patients/p1/time-entries", json=future)
    assert (r.status_code, r.json()["code"]) == (422, "in_future")
    r = await client.post(f"{API}/patients/p1/time-entries", json={**body, "reason": "phone call, no laptop"})
    assert r.status_code == 201, r.text
    assert (r.json()["capture"], r.json()["minutes"]) == ("manual", 25)


async def test_only_the_author_edits_and_only_for_a_day(client, world, clock, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    body = {
        "kind": "review",
        "started_at": (T0 - timedelta(hours=1)).isoformat(),
        "minutes": 12,
        "reason": "reviewed overnight readings",
    }
    entry = (await client.post(f"{API}/patients/p1/time-entries", json=body)).json()
    path = f"{API}/time-entries/{entry['entry_id']}"
    async with new_client() as other:
        await sign_in(other, world["n1"], T0)  # same team, not the author
        before = audit_head(world.url)
        r = await other.patch(path, json={"minutes": 30})
        assert (r.status_code, r.json()["code"]) == (403, "not_author")
        assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("time.edit", "failed")]
    r = await client.patch(path, json={"minutes": 15, "kind": "interactive_communication"})
    assert r.status_code == 200, r.text
    assert (r.json()["minutes"], r.json()["kind"]) == (15, "interactive_communication")
    assert (await client.patch(path, json={"minutes": None})).status_code == 422
    clock.advance(24 * 3600 + 1)
    await sign_in(client, world["c1"], clock.now())
    late = await client.patch(path, json={"minutes": 16})
    assert (late.status_code, late.json()["code"]) == (409, "edit_window_closed")
    assert (await client.delete(path)).json()["code"] == "edit_window_closed"
    with psycopg.connect(world.url) as conn:
        revisions = conn.execute(
            "SELECT change, previous->>'minutes' FROM time_entry_revisions WHERE entry_id = %s", (entry["entry_id"],)
        ).fetchall()
    assert revisions == [("edit", "12")]


async def test_deleted_entries_leave_the_month_and_their_id(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    body = {"kind": "review", "started_at": (T0 - timedelta(hours=1)).isoformat(), "minutes": 5, "reason": "typo"}
    entry = (await client.post(f"{API}/patients/p1/time-entries", json=body)).json()
    assert (await client.delete(f"{API}/time-entries/{entry['entry_id']}")).status_code == 200
    listing = (await client.get(f"{API}/patients/p1/time-entries")).json()
    assert (listing["items"], listing["month_minutes"]) == ([], 0)
    before = audit_head(world.url)
    gone = await client.patch(f"{API}/time-entries/{entry['entry_id']}", json={"minutes": 1})
    assert gone.status_code == 404
    assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]


async def test_time_entries_page_by_cursor(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    for h in range(1, 6):
        body = {"kind": "review", "started_at": (T0 - timedelta(hours=h)).isoformat(), "minutes": 3, "reason": "r" * 5}
        assert (await client.post(f"{API}/patients/p1/time-entries", json=body)).status_code == 201
    seen, cursor, first_cursor = [], None, None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"{API}/patients/p1/time-entries", params=params)).json()
        seen += [e["started_at"] for e in page["items"]]
        assert page["month_minutes"] == 15
        cursor = page["next_cursor"]
        first_cursor = first_cursor or cursor
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 5
    r = await client.get(f"{API}/patients/p2/time-entries", params={"cursor": first_cursor})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")  # p1's cursor on p2's list

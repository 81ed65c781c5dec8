"""The alert queue of the caller's panel: worst first then oldest, filters, cursor pages; the
clinician actions go through the alert lifecycle (an invalid transition is a 409)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.clinician_api.world import T0, add_alert, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


@pytest.fixture
def queue_world(world):
    add_alert(world, "p1-low", "o1", "p1", "low", opened=T0 - timedelta(hours=9))
    add_alert(world, "p2-crit", "o1", "p2", "critical", opened=T0 - timedelta(minutes=1))
    add_alert(world, "p1-high-old", "o1", "p1", "high", opened=T0 - timedelta(hours=3), rule="threshold:hr:high")
    add_alert(world, "p2-high-new", "o1", "p2", "high", opened=T0 - timedelta(hours=1), rule="threshold:hr:high")
    add_alert(world, "p3-crit", "o1", "p3", "critical", opened=T0 - timedelta(hours=1))  # team t2
    add_alert(world, "q1-crit", "o2", "q1", "critical", opened=T0 - timedelta(hours=1))  # o2
    return world


def _names(world, items) -> list[str]:
    by_id = {v: k for k, v in world.alerts.items()}
    return [by_id[i["alert_id"]] for i in items]


async def test_queue_is_my_panels_alerts_worst_first_then_oldest(client, queue_world) -> None:
    await sign_in(client, queue_world["n1"], T0)
    body = (await client.get(f"{API}/alerts")).json()
    assert _names(queue_world, body["items"]) == ["p2-crit", "p1-high-old", "p2-high-new", "p1-low"]
    assert body["items"][0]["display_name"] == "Name p2"


async def test_queue_filters_and_pages(client, queue_world) -> None:
    w = queue_world
    await sign_in(client, w["n1"], T0)
    assert _names(w, (await client.get(f"{API}/alerts", params={"severity": "high"})).json()["items"]) == [
        "p1-high-old",
        "p2-high-new",
    ]
    assert _names(w, (await client.get(f"{API}/alerts", params={"patient_id": "p1"})).json()["items"]) == [
        "p1-high-old",
        "p1-low",
    ]
    seen, cursor = [], None
    while True:
        page = (await client.get(f"{API}/alerts", params={"limit": 1} | ({"cursor": cursor} if cursor else {}))).json()
        seen += _names(w, page["items"])
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ["p2-crit", "p1-high-old", "p2-high-new", "p1-low"]
    await client.post(f"{API}/alerts/{w.alerts['p1-low']}/assign", json={"assignee": w["n1"].user_id})
    mine = (await client.get(f"{API}/alerts", params={"assigned_to_me": "true"})).json()["items"]
    assert _names(w, mine) == ["p1-low"]
    await client.post(f"{API}/alerts/{w.alerts['p2-crit']}/snooze", json={"minutes": 30})
    awake = (await client.get(f"{API}/alerts", params={"include_snoozed": "false"})).json()["items"]
    assert "p2-crit" not in _names(w, awake)


async def test_actions_follow_the_lifecycle(client, queue_world) -> None:
    w = queue_world
    await sign_in(client, w["c1"], T0)
    aid = w.alerts["p1-high-old"]
    ack = await client.post(f"{API}/alerts/{aid}/acknowledge", json={"note": "on it"})
    assert ack.json()["state"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == w["c1"].user_id
    again = await client.post(f"{API}/alerts/{aid}/acknowledge", json={})
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")
    assert (await client.post(f"{API}/alerts/{aid}/resolve", json={"note": " "})).status_code == 422
    done = await client.post(f"{API}/alerts/{aid}/resolve", json={"note": "recovered"})
    assert done.json()["state"] == "resolved"
    detail = (await client.get(f"{API}/alerts/{aid}")).json()
    assert [e["type"] for e in detail["events"]] == ["opened", "acknowledged", "resolved"]
    assert detail["resolution_note"] == "recovered"
    bad = await client.post(f"{API}/alerts/{w.alerts['p1-low']}/assign", json={"assignee": w["x1"].user_id})
    assert (bad.status_code, bad.json()["code"]) == (422, "bad_assignee")

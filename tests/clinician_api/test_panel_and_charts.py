"""The panel sorted by risk with latest vitals, adherence and devices; cursor pages; the panel
page's sparklines, served apart for several patients at once; vitals charts at raw, hourly and
daily resolution with ETags."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from clinician_api.pagination import Page
from clinician_api.routes.patients import PanelPatient
from tests.clinician_api.world import T0, add_alert, add_readings, audit_head, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


@pytest.fixture
def busy_panel(world):
    """Team t1 grows to p1..p6 with alerts of several severities and ages, a NEWS2 score."""
    with psycopg.connect(world.url, autocommit=True) as conn:
        for pid in ("p4", "p5", "p6"):
            conn.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES (%s, 'o1', %s)", (pid, pid))
            conn.execute("INSERT INTO care_team_patients VALUES (%s, 'o1', %s, now())", (world.teams["t1"], pid))
    add_alert(world, "p2-high-old", "o1", "p2", "high", opened=T0 - timedelta(hours=5))
    add_alert(world, "p4-high-new", "o1", "p4", "high", opened=T0 - timedelta(hours=1))
    add_alert(world, "p5-critical", "o1", "p5", "critical", opened=T0 - timedelta(minutes=5))
    add_alert(
        world,
        "p6-news2",
        "o1",
        "p6",
        "medium",
        opened=T0 - timedelta(hours=2),
        rule="news2",
        kind="news2",
        detail={"score": 6},
    )
    add_alert(
        world, "p1-medium", "o1", "p1", "medium", opened=T0 - timedelta(hours=2), rule="threshold:hr:high", detail={}
    )
    return world


async def test_the_panel_is_sorted_by_risk(client, busy_panel) -> None:
    await sign_in(client, busy_panel["c1"], T0)
    items = (await client.get(f"{API}/patients")).json()["items"]
    # critical; then high, oldest unacknowledged first; then medium with NEWS2 6 before medium without; then none
    assert [p["patient_id"] for p in items] == ["p5", "p2", "p4", "p6", "p1"]
    assert items[0]["max_severity"] == "critical"
    assert items[3]["news2"] == 6


async def test_panel_pages_follow_the_cursor_and_cursors_cannot_be_forged(client, new_client, busy_panel) -> None:
    await sign_in(client, busy_panel["c1"], T0)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"{API}/patients", params=params)).json()
        seen += [p["patient_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p5", "p2", "p4", "p6", "p1"]
    first = (await client.get(f"{API}/patients", params={"limit": 2})).json()["next_cursor"]
    body, mac = first.split(".")
    r = await client.get(f"{API}/patients", params={"cursor": body[:-2] + "AA." + mac})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")
    async with new_client() as other:  # a cursor is bound to its caller
        await sign_in(other, busy_panel["n1"], T0)
        r = await other.get(f"{API}/patients", params={"cursor": first})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")


async def test_each_panel_entry_has_latest_vitals_sparklines_adherence_and_devices(client, world) -> None:
    points = [(T0 - timedelta(days=d, hours=h), 95.0 + h) for d in range(0, 40, 2) for h in (1, 3)]
    add_readings(world.url, "o1", "p1", "spo2", points)
    with psycopg.connect(world.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agents (agent_id, org_id, status, sign_public_key, kex_public_key, last_seen_at) "
            "VALUES ('agent-1', 'o1', 'active', %s, %s, %s)",
            (bytes(32), bytes(32), T0),
        )
        conn.execute(
            "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) "
            "VALUES ('agent-1', 'o1', 'p1', %s)",
            (T0 - timedelta(days=60),),
        )
        conn.execute(
            "INSERT INTO devices (device_id, org_id, agent_id, battery_pct, last_seen_at) "
            "VALUES ('dev-1', 'o1', 'agent-1', 42, %s)",
            (T0,),
        )
    await sign_in(client, world["c1"], T0)
    p1 = next(p for p in (await client.get(f"{API}/patients")).json()["items"] if p["patient_id"] == "p1")
    assert [(v["metric"], v["value"], v["unit"]) for v in p1["latest"]] == [("spo2", 96.0, "%")]
    assert "sparklines" not in p1  # served apart: GET /sparklines
    assert p1["adherence_days"] == 15  # every other day, the last 30 days
    assert {(d["kind"], d["id"], d["battery_pct"]) for d in p1["devices"]} == {
        ("agent", "agent-1", None),
        ("device", "dev-1", 42),
    }


async def test_the_panel_body_is_exactly_its_documented_model(client, busy_panel) -> None:
    """The route serialises plain data, not models: the body must still be what ``Page[PanelPatient]``
    says, field for field and in its order (the model re-serialises it byte for byte)."""
    points = [(T0 - timedelta(hours=h), 70.0 + h) for h in range(1, 6)]
    add_readings(busy_panel.url, "o1", "p1", "heart_rate", points)
    add_readings(busy_panel.url, "o1", "p2", "spo2", points)
    await sign_in(client, busy_panel["c1"], T0)
    for params in ({}, {"limit": 2}):
        r = await client.get(f"{API}/patients", params=params)
        assert r.status_code == 200
        page = Page[PanelPatient].model_validate_json(r.content, strict=False)
        assert page.model_dump_json().encode() == r.content
        assert any(item.latest for item in page.items)
        assert r.headers["content-type"] == "application/json"


async def test_sparklines_of_a_page_of_patients_in_one_call(client, world) -> None:
    points = [(T0 - timedelta(days=d, hours=h), 95.0 + h) for d in range(0, 40, 2) for h in (1, 3)]
    add_readings(world.url, "o1", "p1", "spo2", points)
    add_readings(world.url, "o1", "p2", "heart_rate", [(T0 - timedelta(hours=h), 60.0 + h) for h in (1, 2, 30)])
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    r = await client.get(f"{API}/sparklines", params={"patient": ["p2", "p1", "p2"]})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [p["patient_id"] for p in items] == ["p2", "p1"]  # as asked, each once
    # 7 days before T0 (08:00) in 6-hour slots: from 06:00 seven days ago to the slot of T0
    body = r.json()
    start, slot = _dt(body["start"]), timedelta(seconds=body["slot_s"])
    assert (start, slot) == (T0 - timedelta(days=7, hours=2), timedelta(hours=6))
    # readings at 05:00 and 07:00 every other day: two slots on each of 4 days of the last 7
    spark = next(s for s in items[1]["sparklines"] if s["metric"] == "spo2")["values"]
    assert len(spark) == 29
    filled = {start + i * slot: v for i, v in enumerate(spark) if v is not None}
    assert len(filled) == 8
    assert filled[T0 - timedelta(days=2, hours=2)] == 96.0  # 07:00 two days ago, alone in its slot
    assert [s["metric"] for s in items[0]["sparklines"]] == ["heart_rate"]
    assert [v for v in items[0]["sparklines"][0]["values"] if v is not None] == [
        90.0,
        61.5,
    ]  # 02:00 yesterday; 06:00 and 07:00
    with psycopg.connect(world.url) as conn:
        rows = conn.execute(
            "SELECT action, outcome, basis, subjects FROM audit_log WHERE audit_id > %s", (before,)
        ).fetchall()
    assert rows == [("sparklines.read", "success", "panel", ["p2", "p1"])]
    again = await client.get(
        f"{API}/sparklines", params={"patient": ["p2", "p1"]}, headers={"If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304


async def test_sparklines_of_a_hidden_patient_refuse_the_whole_call_with_one_denied_row(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    missing = await client.get(f"{API}/sparklines", params={"patient": ["p1", "nobody"]})
    before = audit_head(world.url)
    r = await client.get(f"{API}/sparklines", params={"patient": ["p1", "p3", "q1"]})  # p3: team t2; q1: org o2
    assert r.status_code == missing.status_code == 404
    assert {k: v for k, v in r.json().items() if k != "instance"} == {
        k: v for k, v in missing.json().items() if k != "instance"
    }
    with psycopg.connect(world.url) as conn:
        rows = conn.execute(
            "SELECT action, outcome, patient_id, subjects FROM audit_log WHERE audit_id > %s", (before,)
        ).fetchall()
    assert rows == [("sparklines.read", "denied", "p3", ["p3", "q1"])]
    assert (await client.get(f"{API}/sparklines", params={"patient": ["p1"] * 0})).status_code == 422
    assert (await client.get(f"{API}/sparklines", params={"patient": [f"p{i}" for i in range(201)]})).status_code == 422


def _dt(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_vitals_chart_at_three_resolutions_with_an_etag(client, world) -> None:
    points = [(T0 - timedelta(hours=48) + timedelta(minutes=10 * i), 90.0 + (i % 6)) for i in range(288)]
    add_readings(world.url, "o1", "p1", "spo2", points)
    await sign_in(client, world["c1"], T0)
    rng = {"start": (T0 - timedelta(hours=48)).isoformat(), "end": T0.isoformat()}
    raw = (await client.get(f"{API}/patients/p1/vitals/spo2", params=rng | {"resolution": "raw"})).json()
    hourly = await client.get(f"{API}/patients/p1/vitals/spo2", params=rng | {"resolution": "hourly"})
    daily = (await client.get(f"{API}/patients/p1/vitals/spo2", params=rng | {"resolution": "daily"})).json()
    assert len(raw["points"]) == 288
    assert raw["unit"] == "%"
    assert not raw["truncated"]
    body = hourly.json()
    assert len(body["points"]) == 48
    assert body["points"][0]["count"] == 6
    assert body["points"][0]["min"] == 90.0
    assert body["points"][0]["max"] == 95.0
    assert body["points"][0]["avg"] == 92.5
    assert sum(p["count"] for p in daily["points"]) == 288
    etag = hourly.headers["etag"]
    again = await client.get(
        f"{API}/patients/p1/vitals/spo2", params=rng | {"resolution": "hourly"}, headers={"if-none-match": etag}
    )
    assert again.status_code == 304
    assert again.content == b""
    add_readings(world.url, "o1", "p1", "spo2", [(T0 - timedelta(minutes=1), 80.0)])
    changed = await client.get(
        f"{API}/patients/p1/vitals/spo2", params=rng | {"resolution": "hourly"}, headers={"if-none-match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_chart_ranges_are_validated(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    base = f"{API}/patients/p1/vitals"
    assert (await client.get(f"{base}/nope")).json()["code"] == "unknown_metric"
    far = {"start": (T0 - timedelta(days=40)).isoformat(), "end": T0.isoformat(), "resolution": "raw"}
    assert (await client.get(f"{base}/spo2", params=far)).json()["code"] == "bad_range"
    backwards = {"start": T0.isoformat(), "end": (T0 - timedelta(hours=1)).isoformat()}
    assert (await client.get(f"{base}/spo2", params=backwards)).json()["code"] == "bad_range"
    naive = {"start": "2026-03-01T00:00:00", "end": "2026-03-01T05:00:00"}
    assert (await client.get(f"{base}/spo2", params=naive)).json()["code"] == "naive_time"


async def test_raw_charts_are_capped(world, clock) -> None:

    from tests.clinician_api.conftest import serving, settings_for

    add_readings(world.url, "o1", "p1", "spo2", [(T0 - timedelta(minutes=i + 1), 95.0) for i in range(150)])
    async with serving(settings_for(world.url, api_chart_max_points=100), clock) as c:
        await sign_in(c, world["c1"], T0)
        body = (await c.get(f"{API}/patients/p1/vitals/spo2", params={"resolution": "raw"})).json()
    assert len(body["points"]) == 100
    assert body["truncated"]


async def test_adherence_counts_at_most_the_thirty_days_it_names(client, world) -> None:
    # Readings at 07:30 and 23:00 every day (now is 08:00): "now minus 30 days" touches 31 UTC days.
    times = [T0 - timedelta(days=d, minutes=30) for d in range(40)] + [
        T0 - timedelta(days=d, hours=9) for d in range(1, 40)
    ]
    add_readings(world.url, "o1", "p1", "spo2", [(t, 96.0) for t in times])
    await sign_in(client, world["c1"], T0)
    p1 = next(p for p in (await client.get(f"{API}/patients")).json()["items"] if p["patient_id"] == "p1")
    assert p1["adherence_days"] == 30

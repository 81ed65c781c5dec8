"""The portal through HTTP on a real database: a patient sees only their own pages, each page
leaves exactly one audit row, another patient's id (or a staff member at a patient's portal) is the
same 404 as a missing one with one denied audit row, and the pages say the week in plain words."""

from __future__ import annotations

import re

import pytest

from clinician_api.middleware import CSP
from tests.clinician_api.portal.scene import OTHER_SYSTOLIC, furnish
from tests.clinician_api.world import T0, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio

PAGES = (
    ("/portal/p1", "portal.home.read"),
    ("/portal/p1/readings", "portal.readings.read"),
    ("/portal/p1/devices", "portal.devices.read"),
    ("/portal/p1/consent", "portal.consent.read"),
    ("/portal/p1/messages", "portal.messages.read"),
    ("/portal/p1/consults", "portal.consults.read"),
)


def _text(html: str) -> str:
    """The page's words, tags dropped and white space squeezed (what a screen reader reads)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


async def test_signed_out_portal_goes_to_sign_in(client, world) -> None:
    r = await client.get("/portal/p1/readings")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=%2Fportal%2Fp1%2Freadings")
    assert audit_rows(world.url) == []


async def test_a_patient_lands_on_their_own_portal(client, world) -> None:
    await sign_in(client, world["pu1"], T0)
    r = await client.get("/")
    assert (r.status_code, r.headers["location"]) == (303, "/portal")
    r = await client.get("/portal")
    assert (r.status_code, r.headers["location"]) == (303, "/portal/p1")


async def test_every_page_is_the_patients_own_and_leaves_one_audit_row(client, world) -> None:
    furnish(world, T0)
    await sign_in(client, world["pu1"], T0)
    for path, action in PAGES:
        before = audit_head(world.url)
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["cache-control"] == "no-store"
        assert "<script>" not in r.text
        assert " style=" not in r.text
        rows = audit_rows(world.url, since=before)
        assert [(a, o, role, pid) for _, a, o, role, pid, _, _ in rows] == [(action, "success", "patient", "p1")], path
        text = _text(r.text)
        assert f"{OTHER_SYSTOLIC:.0f}" not in text, path  # nothing of p2 or q1
        assert "other-v9" not in text, path
        assert "Name p2" not in text
        assert "Name q1" not in text


async def test_readings_in_plain_words(client, world) -> None:
    furnish(world, T0)
    await sign_in(client, world["pu1"], T0)
    text = _text((await client.get("/portal/p1/readings")).text)
    assert "Your blood pressure this week: mostly in your target range." in text
    assert "Your oxygen level this week: always in your target range." in text
    assert "Your pulse this week: always in your target range." in text
    # The patient's own targets, from their alert settings (defaults: home goal below 130/80).
    assert "upper number above 90 and below 130 mmHg; lower number below 80 mmHg." in text
    assert "Your target: above 94 %." in text
    assert "Last reading: 124/76 mmHg" in text
    home = _text((await client.get("/portal/p1")).text)
    assert "Your blood pressure this week: mostly in your target range." in home
    assert "1 of your devices needs attention." in home
    assert "You agreed to remote monitoring on Tuesday 3 February 2026, online." in home


async def test_devices_check(client, world) -> None:
    furnish(world, T0)
    await sign_in(client, world["pu1"], T0)
    text = _text((await client.get("/portal/p1/devices")).text)
    assert "Home hub Working Last heard from 5 minutes ago." in text
    assert "Blood pressure monitor (Omron BP7000) Working" in text
    assert "Battery good (64 %)." in text
    assert "Last reading: Blood pressure 124/76 mmHg, Pulse 76 beats a minute, 8 hours ago." in text
    assert "Finger pulse oximeter (Nonin 3230) Needs attention" in text
    assert "Not heard from for 3 days: check it is switched on and near your home hub." in text
    assert "Battery low (12 %): please change or charge it." in text
    assert "Last reading: Oxygen level 97 %, 3 days ago." in text


async def test_consent_with_date_and_version(client, world) -> None:
    furnish(world, T0)
    await sign_in(client, world["pu1"], T0)
    text = _text((await client.get("/portal/p1/consent")).text)
    assert "You agreed to remote monitoring on Tuesday 3 February 2026, online." in text
    assert "Consent form version rpm-v3" in text
    assert "Date of your decision Tuesday 3 February 2026" in text
    assert "You agreed to remote monitoring on Monday 2 June 2025, on a signed form. (form version rpm-v2)" in text


async def test_messages_and_consults_are_empty_until_wired(client, world) -> None:
    await sign_in(client, world["pu1"], T0)
    assert "No messages yet." in _text((await client.get("/portal/p1/messages")).text)
    assert "No video appointment booked." in _text((await client.get("/portal/p1/consults")).text)
    home = _text((await client.get("/portal/p1")).text)
    assert "No new messages." in home
    assert "No video appointment booked." in home
    assert "No readings yet." in home  # a patient with nothing measured yet


@pytest.mark.parametrize("path", ["/portal/p2", "/portal/p2/readings", "/portal/q1/devices", "/portal/p3/consent"])
async def test_another_patients_id_is_404_with_a_denied_audit_row(client, world, path) -> None:
    furnish(world, T0)
    await sign_in(client, world["pu1"], T0)
    missing = await client.get("/portal/nobody/readings")
    before = audit_head(world.url)
    r = await client.get(path)
    assert r.status_code == 404
    assert r.text == missing.text  # a real patient's id looks exactly like a missing one
    target = path.split("/")[2]
    rows = audit_rows(world.url, since=before)
    assert [(a, o, role, pid, obj) for _, a, o, role, pid, _, obj in rows] == [
        ("portal.read", "denied", "patient", target, target)
    ]
    assert f"{OTHER_SYSTOLIC:.0f}" not in r.text
    assert "Name " not in r.text


@pytest.mark.parametrize("raw", ["p1%2F..%2Fp2", "P1", "p1%00", "p1 ", "%70%31x", "../p2", "p2;p1"])
async def test_hostile_ids_never_reach_another_patient(client, world, raw) -> None:
    furnish(world, T0)
    await sign_in(client, world["pu1"], T0)
    r = await client.get(f"/portal/{raw}/readings")
    assert r.status_code == 404, raw
    assert f"{OTHER_SYSTOLIC:.0f}" not in r.text


async def test_staff_have_no_portal_even_for_their_own_patients(client, world) -> None:
    furnish(world, T0)
    await sign_in(client, world["c1"], T0)  # p1 is in c1's panel
    before = audit_head(world.url)
    r = await client.get("/portal/p1/readings")
    assert r.status_code == 404
    rows = audit_rows(world.url, since=before)
    assert [(a, o, role, pid) for _, a, o, role, pid, _, _ in rows] == [("portal.read", "denied", "clinician", "p1")]
    assert (await client.get("/portal")).status_code == 404
    r = await client.get("/")
    assert r.headers["location"] == "/panel"


async def test_the_messages_page_lists_the_patients_own_threads_only(client, world) -> None:
    from tests.clinician_api.messaging import open_thread
    from tests.clinician_api.world import add_alert

    await sign_in(client, world["c1"], T0)
    mine = await open_thread(client, "p1", subject="Swollen ankle", body="Please send a photo of the ankle")
    alert = add_alert(world, "a", "o1", "p1", "high", opened=T0)
    await open_thread(client, "p1", subject="Staff only discussion", kind="care_team", alert_id=alert)
    await open_thread(client, "p2", subject="Another patient's thread")
    await sign_in(client, world["pu1"], T0)
    text = _text((await client.get("/portal/p1/messages")).text)
    assert "Swollen ankle" in text
    assert "Staff only discussion" not in text
    assert "Another patient" not in text
    assert "1 new" in text  # the clinician's first message, unread
    home = _text((await client.get("/portal/p1")).text)
    assert "You have 1 new message from your care team." in home
    assert mine["thread_id"]

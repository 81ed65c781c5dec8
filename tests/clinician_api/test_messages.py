"""Secure messaging over the API (real PostgreSQL, the app in-process): threads, participants, read
state and unread counts, edits as versions and deletions as tombstones, attachments sealed at rest,
PHI-free notifications, and the attacks: a non-participant, a patient of another clinic, a user of
another organisation (404, the body of a real 404, one denied audit row each), break-glass reads
but cannot write, attachment type and size abuse, and CSRF."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from store import care_teams, users
from tests.clinician_api.conftest import serving, settings_for
from tests.clinician_api.messaging import jpeg_bytes, open_thread, png_bytes
from tests.clinician_api.world import PASSWORD, T0, add_alert, audit_head, audit_rows, passwords, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


async def _as(new_client, world, name: str):
    c = new_client()
    await sign_in(c, world[name], T0)
    return c


def _patient_user(world, name: str, org: str, patient: str) -> None:
    """A patient account for ``patient`` (the world has one only for p1)."""
    with psycopg.connect(world.url, autocommit=True) as conn:
        row = users.create_user(
            conn,
            org_id=org,
            email=f"{name}@{org}.test",
            display_name=name.upper(),
            role="patient",
            now=T0,
            patient_id=patient,
            password_hash=passwords().hash(PASSWORD),
        )
    from tests.clinician_api.world import Account

    world.accounts[name] = Account(row.user_id, row.email, "patient", org, None, patient)


async def test_a_patient_thread_round_trip_with_read_state_and_unread_counts(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1")
    names = {p["display_name"] for p in t["participants"]}
    # The patient's account and the staff of p1's team (not the service account, not team t2's c2).
    assert names == {"PU1", "C1", "N1", "CC1", "A1"}
    assert [m["body"] for m in t["messages"]] == ["How is the swelling today?"]
    assert t["unread"] == 0
    assert t["basis"] == "participant"
    assert t["can_write"]

    patient = await _as(new_client, world, "pu1")
    mine = (await patient.get(f"{API}/threads")).json()
    assert [(x["thread_id"], x["unread"]) for x in mine] == [(t["thread_id"], 1)]
    assert (await patient.get(f"{API}/threads/unread")).json() == {"unread": 1}
    seen = (await patient.get(f"{API}/threads/{t['thread_id']}")).json()
    assert seen["messages"][0]["read_by"] == []
    r = await patient.post(f"{API}/threads/{t['thread_id']}/read", json={"through_seq": 99})
    assert r.json() == {"through_seq": 1}  # never past the end
    assert (await patient.get(f"{API}/threads/unread")).json() == {"unread": 0}
    r = await patient.post(f"{API}/threads/{t['thread_id']}/messages", json={"body": "Worse than yesterday."})
    assert r.status_code == 201
    assert r.json()["seq"] == 2

    detail = (await client.get(f"{API}/threads/{t['thread_id']}")).json()
    assert [m["body"] for m in detail["messages"]] == ["How is the swelling today?", "Worse than yesterday."]
    assert detail["messages"][0]["read_by"] == [world["pu1"].user_id]
    assert detail["unread"] == 1
    assert (await client.get(f"{API}/threads/unread")).json() == {"unread": 1}


async def test_outsiders_get_the_404_of_a_missing_thread_and_each_denial_is_audited(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1")
    tid = t["thread_id"]
    _patient_user(world, "pu2", "o1", "p2")  # a patient of the same clinic, not in this thread
    _patient_user(world, "qu1", "o2", "q1")  # a patient of another clinic
    outsiders = [
        await _as(new_client, world, "c2"),  # staff of another team
        await _as(new_client, world, "x1"),  # staff of another organisation
    ]
    for name in ("pu2", "qu1"):
        c = new_client()
        await sign_in(c, world[name], T0)
        outsiders.append(c)
    missing = await outsiders[0].get(f"{API}/threads/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    head = audit_head(world.url)
    for c in outsiders:
        for method, path, body in (
            ("GET", f"/threads/{tid}", None),
            ("POST", f"/threads/{tid}/messages", {"body": "hi"}),
            ("POST", f"/threads/{tid}/read", {"through_seq": 1}),
            ("GET", f"/threads/{tid}/messages/{t['messages'][0]['message_id']}/versions", None),
        ):
            r = await c.request(method, API + path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            got = r.json()
            assert {k: v for k, v in got.items() if k != "instance"} == {
                k: v for k, v in missing.json().items() if k != "instance"
            }
        assert (await c.get(f"{API}/threads")).json() == []  # and it is not listed
    denied = [r for r in audit_rows(world.url, since=head) if r[2] == "denied"]
    assert len(denied) == 4 * 4
    assert {(r[1], r[4], r[5], r[6]) for r in denied} == {
        ("thread.read", "p1", "thread", tid),
        ("thread.write", "p1", "thread", tid),
    }
    # No message was written by anyone of them.
    detail = (await client.get(f"{API}/threads/{tid}")).json()
    assert len(detail["messages"]) == 1


async def test_a_participant_removed_from_the_care_team_loses_the_thread(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1")
    nurse = await _as(new_client, world, "n1")
    assert (await nurse.get(f"{API}/threads/{t['thread_id']}")).status_code == 200
    with psycopg.connect(world.url, autocommit=True) as conn:
        team = care_teams.get_team(conn, world.teams["t1"], "o1")
        assert team is not None
        care_teams.remove_member(conn, team, world["n1"].user_id)
    head = audit_head(world.url)
    assert (await nurse.get(f"{API}/threads/{t['thread_id']}")).status_code == 404
    assert [r[2] for r in audit_rows(world.url, since=head)] == ["denied"]


async def test_break_glass_reads_a_thread_but_cannot_write(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1")
    other = await _as(new_client, world, "c2")
    assert (await other.get(f"{API}/threads/{t['thread_id']}")).status_code == 404
    with psycopg.connect(world.url, autocommit=True) as conn:
        care_teams.create_grant(
            conn,
            org_id="o1",
            user_id=world["c2"].user_id,
            patient_id="p1",
            reason="covering the night shift emergency",
            now=T0,
            expires_at=T0 + timedelta(hours=1),
        )
    head = audit_head(world.url)
    r = await other.get(f"{API}/threads/{t['thread_id']}")
    assert r.status_code == 200
    assert (r.json()["basis"], r.json()["can_write"]) == ("break_glass", False)
    r = await other.post(f"{API}/threads/{t['thread_id']}/messages", json={"body": "hello"})
    assert (r.status_code, r.json()["code"]) == (403, "read_only")
    with psycopg.connect(world.url) as conn:
        rows = conn.execute(
            "SELECT action, outcome, basis FROM audit_log WHERE audit_id > %s ORDER BY audit_id", (head,)
        ).fetchall()
    assert rows[0] == ("thread.read", "success", "break_glass")


async def test_care_team_threads_are_one_per_alert_and_never_reach_the_patient(client, world, new_client) -> None:
    alert = add_alert(world, "a", "o1", "p1", "high", opened=T0 - timedelta(hours=1))
    other_alert = add_alert(world, "b", "o1", "p2", "high", opened=T0 - timedelta(hours=1))
    await sign_in(client, world["n1"], T0)
    t = await open_thread(client, "p1", kind="care_team", alert_id=alert, subject="SpO2 dip", body="Call her?")
    assert "PU1" not in {p["display_name"] for p in t["participants"]}
    r = await client.post(f"{API}/patients/p1/threads", json={"kind": "care_team", "subject": "x", "alert_id": alert})
    assert (r.status_code, r.json()["code"]) == (409, "conflict")
    r = await client.post(
        f"{API}/patients/p1/threads", json={"kind": "care_team", "subject": "x", "alert_id": other_alert}
    )
    assert (r.status_code, r.json()["code"]) == (422, "bad_alert")
    patient = await _as(new_client, world, "pu1")
    assert (await patient.get(f"{API}/threads/{t['thread_id']}")).status_code == 404
    r = await patient.post(f"{API}/patients/p1/threads", json={"kind": "care_team", "subject": "x", "alert_id": alert})
    assert (r.status_code, r.json()["code"]) == (403, "staff_only")
    # A patient cannot add themselves to it either.
    r = await client.post(f"{API}/threads/{t['thread_id']}/participants", json={"user_id": world["pu1"].user_id})
    assert (r.status_code, r.json()["code"]) == (422, "not_eligible")
    r = await client.post(f"{API}/threads/{t['thread_id']}/participants", json={"user_id": world["c2"].user_id})
    assert (r.status_code, r.json()["code"]) == (422, "not_eligible")  # not of p1's care teams


async def test_edits_are_versions_and_deletions_tombstones_that_keep_the_history(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1", body="Take 40 mg")
    tid, mid = t["thread_id"], t["messages"][0]["message_id"]
    r = await client.patch(f"{API}/threads/{tid}/messages/{mid}", json={"body": "Take 20 mg"})
    assert r.json() == {"message_id": mid, "version": 2}
    detail = (await client.get(f"{API}/threads/{tid}")).json()
    assert (detail["messages"][0]["body"], detail["messages"][0]["version"]) == ("Take 20 mg", 2)
    assert detail["messages"][0]["edited_at"] is not None
    nurse = await _as(new_client, world, "n1")
    r = await nurse.patch(f"{API}/threads/{tid}/messages/{mid}", json={"body": "forged"})
    assert (r.status_code, r.json()["code"]) == (403, "not_author")
    r = await nurse.delete(f"{API}/threads/{tid}/messages/{mid}")
    assert (r.status_code, r.json()["code"]) == (403, "not_author")
    r = await client.delete(f"{API}/threads/{tid}/messages/{mid}")
    assert r.json() == {"message_id": mid, "version": 3}
    shown = (await nurse.get(f"{API}/threads/{tid}")).json()["messages"][0]
    assert (shown["deleted"], shown["body"], shown["attachment"]) == (True, None, None)
    versions = (await nurse.get(f"{API}/threads/{tid}/messages/{mid}/versions")).json()
    assert [(v["version"], v["body"], v["deleted"]) for v in versions] == [
        (1, "Take 40 mg", False),
        (2, "Take 20 mg", False),
        (3, None, True),
    ]
    r = await client.patch(f"{API}/threads/{tid}/messages/{mid}", json={"body": "undo"})
    assert (r.status_code, r.json()["code"]) == (403, "deleted")  # a tombstone is final
    # A message id of another thread is not found through this one.
    t2 = await open_thread(client, "p2", body="other")
    r = await client.patch(f"{API}/threads/{tid}/messages/{t2['messages'][0]['message_id']}", json={"body": "x"})
    assert r.status_code == 404
    # The database refuses rewriting history to everyone, its owner included.
    with psycopg.connect(world.url, autocommit=True) as conn:
        for statement in (
            "UPDATE message_versions SET body = 'rewritten'",
            "DELETE FROM message_versions",
            "DELETE FROM thread_messages",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


async def test_attachments_are_sealed_at_rest_and_served_only_to_readers(client, world, new_client) -> None:
    await sign_in(client, world["pu1"], T0)
    t = await open_thread(client, "p1", subject="My ankle", body=None)
    tid = t["thread_id"]
    photo = png_bytes()
    r = await client.post(f"{API}/threads/{tid}/attachments", content=photo, headers={"content-type": "image/png"})
    assert r.status_code == 201, r.text
    aid = r.json()["attachment_id"]
    assert r.json()["media_type"] == "image/png"
    assert r.json()["size_bytes"] == len(photo)
    r = await client.post(f"{API}/threads/{tid}/messages", json={"body": "Here", "attachment_id": aid})
    assert r.status_code == 201
    r = await client.post(f"{API}/threads/{tid}/messages", json={"attachment_id": aid})
    assert (r.status_code, r.json()["code"]) == (409, "already_sent")
    with psycopg.connect(world.url) as conn:
        sealed, key_id = conn.execute(
            "SELECT sealed, key_id FROM message_attachments WHERE attachment_id = %s", (aid,)
        ).fetchone()
    assert photo not in sealed
    assert photo[16:48] not in sealed
    assert len(sealed) == len(photo) + 28
    assert len(key_id) == 16

    nurse = await _as(new_client, world, "n1")
    msg = (await nurse.get(f"{API}/threads/{tid}")).json()["messages"][0]
    assert msg["attachment"]["media_type"] == "image/png"
    got = await nurse.get(msg["attachment"]["url"])
    assert got.status_code == 200
    assert got.content == photo
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"] == f'inline; filename="attachment-{aid}.png"'
    assert "sandbox" in got.headers["content-security-policy"]
    assert got.headers["x-content-type-options"] == "nosniff"

    head = audit_head(world.url)
    outsider = await _as(new_client, world, "c2")
    assert (await outsider.get(msg["attachment"]["url"])).status_code == 404
    rows = audit_rows(world.url, since=head)
    assert [(r[1], r[2]) for r in rows if r[2] == "denied"] == [("thread.read", "denied")]
    # An attachment of one thread is not reachable through another thread the reader takes part in.
    other = await open_thread(nurse, "p1", subject="Other")
    assert (await nurse.get(f"{API}/threads/{other['thread_id']}/attachments/{aid}")).status_code == 404
    # A sealed blob moved to another row does not open (its id is bound into the seal).
    r = await client.post(
        f"{API}/threads/{tid}/attachments", content=jpeg_bytes(), headers={"content-type": "image/jpeg"}
    )
    aid2 = r.json()["attachment_id"]
    with psycopg.connect(world.url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # past the append-only trigger, as an attacker
        conn.execute(
            "UPDATE message_attachments SET size_bytes = %s, "
            "sealed = (SELECT sealed FROM message_attachments WHERE attachment_id = %s) WHERE attachment_id = %s",
            (len(photo), aid, aid2),
        )
    r = await client.get(f"{API}/threads/{tid}/attachments/{aid2}")  # the uploader, not yet sent
    assert (r.status_code, r.json()["code"]) == (409, "attachment_tampered")


@pytest.mark.parametrize(
    ("content", "declared", "status", "code"),
    [
        (b"<html><script>alert(1)</script></html>", "image/jpeg", 415, "type_not_allowed"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 415, "type_not_allowed"),
        (png_bytes(), "image/jpeg", 415, "type_mismatch"),
        (jpeg_bytes(), "text/html", 415, "type_not_allowed"),
        (b"MZ\x90\x00" + b"\x00" * 100, "application/pdf", 415, "type_not_allowed"),
        (b"", "image/png", 422, "empty"),
    ],
)
async def test_attachment_type_abuse_is_refused(client, world, content, declared, status, code) -> None:
    await sign_in(client, world["pu1"], T0)
    t = await open_thread(client, "p1")
    head = audit_head(world.url)
    r = await client.post(
        f"{API}/threads/{t['thread_id']}/attachments", content=content, headers={"content-type": declared}
    )
    assert (r.status_code, r.json()["code"]) == (status, code)
    assert [(x[1], x[2]) for x in audit_rows(world.url, since=head)] == [("attachment.upload", "failed")]
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT count(*) FROM message_attachments").fetchone() == (0,)


async def test_attachment_size_is_limited_by_the_route_and_by_the_request_guard(world, clock) -> None:
    async with serving(settings_for(world.url, api_attachment_max_bytes=4096), clock) as c:
        await sign_in(c, world["pu1"], T0)
        t = await open_thread(c, "p1")
        url = f"{API}/threads/{t['thread_id']}/attachments"
        ok = await c.post(url, content=jpeg_bytes(4096), headers={"content-type": "image/jpeg"})
        assert ok.status_code == 201
        over = await c.post(url, content=jpeg_bytes(4097), headers={"content-type": "image/jpeg"})
        assert (over.status_code, over.json()["code"]) == (413, "too_large")
        # A JSON message is still held to the 1 MiB JSON limit, whatever the attachment limit.
        big = await c.post(f"{API}/threads/{t['thread_id']}/messages", json={"body": "x" * (1 << 20)})
        assert big.status_code == 413
    # The default limit (5 MiB) lets a phone photo through and refuses a larger body before any route.
    async with serving(settings_for(world.url), clock) as c:
        await sign_in(c, world["n1"], T0)
        t = await open_thread(c, "p1")
        url = f"{API}/threads/{t['thread_id']}/attachments"
        photo = await c.post(url, content=jpeg_bytes(3 << 20), headers={"content-type": "image/jpeg"})
        assert photo.status_code == 201
        head = audit_head(world.url)
        r = await c.post(url, content=jpeg_bytes((5 << 20) + 1), headers={"content-type": "image/jpeg"})
        assert (r.status_code, r.json()["code"]) == (413, "too_large")
        assert audit_rows(world.url, since=head) == []  # refused before the route (nothing was read)


async def test_a_photo_is_stored_without_its_location_and_a_broken_image_is_refused(client, world) -> None:
    await sign_in(client, world["pu1"], T0)
    t = await open_thread(client, "p1")
    url = f"{API}/threads/{t['thread_id']}/attachments"
    gps = b"GPSLatitude 51.5072 N GPSLongitude 0.1276 W"
    photo = jpeg_bytes(5000, exif=gps)
    r = await client.post(url, content=photo, headers={"content-type": "image/jpeg"})
    assert r.status_code == 201
    assert r.json()["size_bytes"] < len(photo)
    got = await client.get(f"{url}/{r.json()['attachment_id']}")
    assert gps not in got.content
    assert got.content.endswith(photo[-4000:])
    r = await client.post(url, content=b"\xff\xd8\xff\xe0\x00\x04ab<html>", headers={"content-type": "image/jpeg"})
    assert (r.status_code, r.json()["code"]) == (422, "malformed")
    polyglot = png_bytes() + b"<html><script>alert(1)</script></html>"
    r = await client.post(url, content=polyglot, headers={"content-type": "image/png"})
    got = await client.get(f"{url}/{r.json()['attachment_id']}")
    assert got.content == png_bytes()


async def test_someone_elses_upload_cannot_be_sent_or_read_before_it_is_sent(client, world, new_client) -> None:
    await sign_in(client, world["pu1"], T0)
    t = await open_thread(client, "p1")
    tid = t["thread_id"]
    png = {"content": png_bytes(), "headers": {"content-type": "image/png"}}
    r = await client.post(f"{API}/threads/{tid}/attachments", **png)
    aid = r.json()["attachment_id"]
    nurse = await _as(new_client, world, "n1")
    r = await nurse.post(f"{API}/threads/{tid}/messages", json={"attachment_id": aid})
    assert (r.status_code, r.json()["code"]) == (422, "attachment_not_found")
    assert (await nurse.get(f"{API}/threads/{tid}/attachments/{aid}")).status_code == 404
    assert (await client.get(f"{API}/threads/{tid}/attachments/{aid}")).status_code == 200  # its uploader


async def test_writes_need_the_csrf_token(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1")
    tid, mid = t["thread_id"], t["messages"][0]["message_id"]
    good = client.headers.pop("x-csrf-token")
    for bad in (None, "forged-" + good[:20]):
        headers = {} if bad is None else {"x-csrf-token": bad}
        for method, path, kwargs in (
            ("POST", "/patients/p1/threads", {"json": {"subject": "x"}}),
            ("POST", f"/threads/{tid}/messages", {"json": {"body": "x"}}),
            ("PATCH", f"/threads/{tid}/messages/{mid}", {"json": {"body": "x"}}),
            ("DELETE", f"/threads/{tid}/messages/{mid}", {}),
            ("POST", f"/threads/{tid}/read", {"json": {"through_seq": 1}}),
            ("POST", f"/threads/{tid}/attachments", {"content": png_bytes(), "headers": {"content-type": "image/png"}}),
        ):
            extra = kwargs.pop("headers", {}) if "headers" in kwargs else {}
            r = await client.request(method, API + path, headers={**headers, **extra}, **kwargs)
            assert (r.status_code, r.json()["code"]) == (403, "csrf"), (method, path)
    client.headers["x-csrf-token"] = good
    versions = (await client.get(f"{API}/threads/{tid}/messages/{mid}/versions")).json()
    assert len(versions) == 1


async def test_a_new_message_notifies_the_others_once_per_unread_run_without_phi(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    t = await open_thread(client, "p1", subject="Secret subject", body="Secret body one")
    tid = t["thread_id"]
    await client.post(f"{API}/threads/{tid}/messages", json={"body": "Secret body two"})
    with psycopg.connect(world.url) as conn:
        rows = conn.execute(
            "SELECT u.email, o.channel, o.params, o.kind FROM notification_outbox o JOIN users u "
            "ON u.user_id = o.recipient_user_id ORDER BY 1, 2"
        ).fetchall()
    recipients = {r[0] for r in rows}
    assert recipients == {"pu1@o1.test", "n1@o1.test", "cc1@o1.test", "a1@o1.test"}  # not the author
    assert {r[1] for r in rows} == {"email", "in_app"}
    assert len(rows) == 8  # one per recipient and channel: the second message found them unread already
    for _, _, params, kind in rows:
        assert kind == "thread_message"
        assert params == {"thread_id": tid}
    assert "Secret" not in json.dumps([r[2] for r in rows])
    # The patient reads; the next message notifies the patient again, and nobody else.
    patient = await _as(new_client, world, "pu1")
    await patient.post(f"{API}/threads/{tid}/read", json={"through_seq": 2})
    await client.post(f"{API}/threads/{tid}/messages", json={"body": "Secret body three"})
    with psycopg.connect(world.url) as conn:
        later = conn.execute(
            "SELECT u.email FROM notification_outbox o JOIN users u ON u.user_id = o.recipient_user_id "
            "WHERE o.outbox_id > 8 ORDER BY 1"
        ).fetchall()
    assert later == [("pu1@o1.test",), ("pu1@o1.test",)]


async def test_every_call_leaves_one_audit_row(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    head = audit_head(world.url)
    t = await open_thread(client, "p1")
    tid, mid = t["thread_id"], t["messages"][0]["message_id"]
    await client.get(f"{API}/threads")
    await client.get(f"{API}/threads/unread")
    await client.get(f"{API}/threads/{tid}")
    await client.post(f"{API}/threads/{tid}/messages", json={"body": "more"})
    await client.patch(f"{API}/threads/{tid}/messages/{mid}", json={"body": "changed"})
    await client.get(f"{API}/threads/{tid}/messages/{mid}/versions")
    await client.delete(f"{API}/threads/{tid}/messages/{mid}")
    await client.post(f"{API}/threads/{tid}/read", json={"through_seq": 2})
    png = {"content": png_bytes(), "headers": {"content-type": "image/png"}}
    r = await client.post(f"{API}/threads/{tid}/attachments", **png)
    await client.get(f"{API}/threads/{tid}/attachments/{r.json()['attachment_id']}")
    rows = audit_rows(world.url, since=head)
    assert [(x[1], x[2]) for x in rows] == [
        ("thread.create", "success"),
        ("threads.read", "success"),
        ("threads.unread", "success"),
        ("thread.read", "success"),
        ("message.create", "success"),
        ("message.edit", "success"),
        ("message.versions", "success"),
        ("message.delete", "success"),
        ("thread.mark_read", "success"),
        ("attachment.upload", "success"),
        ("attachment.read", "success"),
    ]
    assert {x[4] for x in rows if x[1] != "threads.read" and x[1] != "threads.unread"} == {"p1"}

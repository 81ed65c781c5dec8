"""A new secure message reaches the other participants through the real worker and a real SMTP
server: an email that says only that a message is waiting, with a link to the thread — never the
text, the subject, the patient's name or the author."""

from __future__ import annotations

import psycopg

from consult.messaging import threads as messaging
from consult.notify.templates import THREAD_MESSAGE, Links, render
from store import notification_outbox as outbox
from tests.consult.notify.conftest import PATIENT_NAME, PUBLIC

SECRET_TEXT = "Your potassium is 6.1, stop the spironolactone"


def test_a_message_is_announced_without_phi(world, worker, smtp, clock) -> None:
    c1 = world["c1"]
    actor = messaging.Actor(c1.user_id, "o1", "clinician")
    with psycopg.connect(world.url, autocommit=True) as conn, conn.transaction():
        opened = messaging.open_thread(
            conn,
            actor,
            patient_id="p1",
            kind="patient",
            subject=f"Potassium result for {PATIENT_NAME}",
            alert_id=None,
            body=SECRET_TEXT,
            now=clock.now(),
        )
    thread_id = opened.thread.thread_id
    worker.run_once()
    got = smtp.wait_for(4)  # pu1, n1, cc1, a1 by email (and in-app)
    assert sorted(m.to[0] for m in got) == sorted(world[n].email for n in ("pu1", "n1", "cc1", "a1"))
    for m in got:
        text = m.raw.decode("utf-8", errors="replace")
        for word in (SECRET_TEXT, "potassium", "Potassium", PATIENT_NAME, "Zebulon", "p1", "C1", "spironolactone"):
            assert word not in text, (word, m.subject)
        assert m.subject == "Vigil: you have a new secure message"
        assert f"{PUBLIC}/messages/{thread_id}" in m.body
    with psycopg.connect(world.url) as conn:
        (item,) = outbox.inbox(conn, world["pu1"].user_id)
    assert (item.kind, item.params) == (THREAD_MESSAGE, {"thread_id": thread_id})
    assert item.delivered_at is not None


def test_a_thread_message_row_that_is_not_a_thread_id_does_not_render() -> None:
    import pytest

    with pytest.raises(ValueError, match="UUID"):
        render(THREAD_MESSAGE, "email", {"thread_id": "x\r\nBcc: evil@example.com"}, None, Links(PUBLIC))

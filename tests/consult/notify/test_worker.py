"""The worker in-process on a ManualClock against real PostgreSQL and a real SMTP server with
STARTTLS: an escalation step's notifications go out once each, retries back off on schedule, a
permanent failure ends failed and visible, quiet hours hold back only what is not critical, and
nothing that leaves Vigil carries PHI."""

from __future__ import annotations

from datetime import time, timedelta

import psycopg
import pytest

from consult.notify.smtp import message_id
from consult.notify.timeline import alert_timeline
from store import notification_delivery as delivery
from store import notification_outbox as outbox
from store import notification_prefs as prefs
from store.notification_outbox import NewNotification, enqueue
from tests.clinician_api.world import T0
from tests.consult.notify.conftest import PATIENT_NAME, PUBLIC, VALUE, escalate, open_alert


def rows(url: str, alert_id: int) -> list[outbox.NotificationRow]:
    with psycopg.connect(url) as conn:
        return outbox.alert_notifications(conn, alert_id)


def set_prefs(url: str, user_id: str, **kw) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        prefs.put_preferences(conn, user_id, "o1", prefs.Preferences(**kw), T0)


def queue_email(url: str, user_id: str, key: str, *, urgent: bool = False, alert_id: int | None = None) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        outbox_id = enqueue(
            conn,
            NewNotification(
                org_id="o1",
                channel="email",
                recipient_user_id=user_id,
                kind="break_glass_review",
                idempotency_key=key,
                params={"grant_id": "g"},
                urgent=urgent,
                alert_id=alert_id,
            ),
            T0,
        )
    assert outbox_id is not None
    return outbox_id


def test_an_escalation_step_is_delivered_once_per_recipient_and_channel(world, worker, smtp, clock) -> None:
    alert = open_alert(world.url, severity="high")
    assert escalate(world.url, clock.now()) == 2  # notify_care_team and message_patient are due at once
    queued = rows(world.url, alert)
    # The nurse (email + in-app, with the ack link on email) and the patient (email + in-app).
    assert sorted((r.kind, r.channel, r.recipient_user_id) for r in queued) == sorted(
        [
            ("alert_care_team", "email", world["n1"].user_id),
            ("alert_care_team", "in_app", world["n1"].user_id),
            ("patient_message", "email", world["pu1"].user_id),
            ("patient_message", "in_app", world["pu1"].user_id),
        ]
    )
    stats = worker.run_once()
    assert (stats.sent, stats.delivered, stats.failed) == (2, 2, 0)
    got = smtp.wait_for(2)
    assert all(m.tls for m in got)  # STARTTLS before MAIL (the server requires it)
    by_to = {m.to[0]: m for m in got}
    nurse = by_to[world["n1"].email]
    assert nurse.subject == "Vigil: a new alert needs your attention"
    assert f"{PUBLIC}/alerts/{alert}" in nurse.body
    assert f"{PUBLIC}/ack/{alert}/" in nurse.body
    sent = {r.channel + r.kind: r for r in rows(world.url, alert)}
    email_row = sent["emailalert_care_team"]
    assert email_row.state == "sent"
    assert email_row.attempts == 1
    assert email_row.provider_ref == nurse.message_id
    assert nurse.message_id == message_id(email_row.idempotency_key, "vigil.test")
    assert sent["in_appalert_care_team"].state == "delivered"
    assert worker.run_once().sent == 0  # nothing twice
    assert smtp.count() == 2


def test_no_phi_leaves_vigil(world, worker, smtp, clock) -> None:
    alert = open_alert(world.url, severity="critical")
    escalate(world.url, clock.now())
    clock.advance(31 * 60)
    escalate(world.url, clock.now())  # page_backup and request_video_consult too
    worker.run_once()
    got = smtp.wait_for(1)
    kinds = {r.kind for r in rows(world.url, alert) if r.channel == "email"}
    assert kinds == {"alert_care_team", "alert_page", "video_consult_requested", "patient_message"}
    assert len(got) == len([r for r in rows(world.url, alert) if r.channel == "email"])
    forbidden = [PATIENT_NAME, "Zebulon", "Quartermaine", str(VALUE), "SpO2", "spo2", "p1", "MRN", "oxygen"]
    for m in got:
        text = m.raw.decode("utf-8", errors="replace")
        for word in forbidden:
            assert word not in text, (word, m.subject)
    patient = next(m for m in got if m.to == (world["pu1"].email,))
    assert patient.subject == "Vigil: a message from your care team"
    assert "/ack/" not in patient.body  # a patient cannot acknowledge
    # In-app (behind sign-in) carries the care team's message.
    with psycopg.connect(world.url) as conn:
        (item,) = outbox.inbox(conn, world["pu1"].user_id)
    assert item.kind == "patient_message"
    assert item.params["template"] == "please_remeasure"


def test_retries_back_off_then_fail_visibly(world, smtp, clock) -> None:
    from tests.consult.notify.conftest import make_worker

    with psycopg.connect(world.url, autocommit=True) as conn:
        conn.execute("UPDATE users SET email = 'flaky-n1@o1.test' WHERE user_id = %s", (world["n1"].user_id,))
    w = make_worker(world.url, smtp, clock, max_attempts=4)
    try:
        outbox_id = queue_email(world.url, world["n1"].user_id, "flaky-1")
        starts = []
        for _ in range(4):
            starts.append(clock.now())
            stats = w.run_once()
            assert stats.retried + stats.failed == 1
            with psycopg.connect(world.url) as conn:
                row = outbox.get_notification(conn, outbox_id)
            if row.state == "pending":
                clock.set(row.next_attempt_at - timedelta(seconds=1))
                assert w.run_once().retried == 0  # not due a second early
                clock.set(row.next_attempt_at)
    finally:
        w.close_channels()
        w.close()
    with psycopg.connect(world.url) as conn:
        attempts = delivery.attempts_of(conn, outbox_id)
        row = outbox.get_notification(conn, outbox_id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "retry", "failed"]
    assert [a.error for a in attempts] == ["smtp_451"] * 4
    # 30 s, 60 s, 120 s after each failed attempt (base 30, factor 2, no jitter).
    assert [(a.next_attempt_at - a.finished_at) for a in attempts[:3]] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
    ]
    assert [a.started_at for a in attempts] == starts
    assert (row.state, row.last_error, row.attempts) == ("failed", "smtp_451", 4)
    assert smtp.count() == 0


def test_a_permanently_failing_address_ends_failed_and_on_the_timeline(world, worker, smtp, clock) -> None:
    with psycopg.connect(world.url, autocommit=True) as conn:
        conn.execute("UPDATE users SET email = 'bounce-n1@o1.test' WHERE user_id = %s", (world["n1"].user_id,))
    alert = open_alert(world.url, severity="medium")
    escalate(world.url, clock.now())
    stats = worker.run_once()
    assert stats.failed == 1
    (failed,) = [r for r in rows(world.url, alert) if r.state == "failed"]
    assert (failed.channel, failed.last_error, failed.attempts) == ("email", "smtp_550", 1)
    with psycopg.connect(world.url) as conn:
        steps = alert_timeline(conn, alert)
    assert ("failed", "notify_care_team", "email", "smtp_550") in [
        (s.step, s.action, s.channel, s.detail.get("error")) for s in steps
    ]
    assert [s.step for s in steps][:2] == ["due", "due"]


@pytest.mark.parametrize("urgent", [False, True])
def test_quiet_hours_hold_back_what_is_not_critical(world, worker, smtp, clock, urgent) -> None:
    # 08:00 UTC is 03:00 in New York: inside 22:00-07:00 there.
    set_prefs(world.url, world["n1"].user_id, time_zone="America/New_York", quiet_start=time(22), quiet_end=time(7))
    outbox_id = queue_email(world.url, world["n1"].user_id, f"quiet-{urgent}", urgent=urgent)
    stats = worker.run_once()
    with psycopg.connect(world.url) as conn:
        row = outbox.get_notification(conn, outbox_id)
    if urgent:
        assert stats.sent == 1
        assert row.state == "sent"
        assert smtp.count() == 1
        return
    assert stats.deferred == 1
    assert (row.state, row.deferred, row.attempts) == ("pending", "quiet_hours", 0)
    assert row.next_attempt_at == T0 + timedelta(hours=4)  # 07:00 in New York (EST, UTC-5)
    clock.set(row.next_attempt_at - timedelta(seconds=1))
    assert worker.run_once().sent == 0
    clock.set(row.next_attempt_at)
    assert worker.run_once().sent == 1
    assert len(smtp.wait_for(1)) == 1


def test_acknowledged_alert_cancels_its_waiting_staff_notifications(world, worker, smtp, clock) -> None:
    from alerts import service

    set_prefs(world.url, world["n1"].user_id, time_zone="America/New_York", quiet_start=time(22), quiet_end=time(7))
    alert = open_alert(world.url, severity="high")
    escalate(world.url, clock.now())
    worker.run_once()  # the nurse's email waits for the end of quiet hours
    with psycopg.connect(world.url, autocommit=True) as conn:
        service.acknowledge(conn, alert, by=world["c1"].user_id, now=clock.now())
    clock.advance(5 * 3600)
    worker.run_once()
    nurse_email = next(
        r for r in rows(world.url, alert) if r.recipient_user_id == world["n1"].user_id and r.channel == "email"
    )
    assert (nurse_email.state, nurse_email.last_error) == ("canceled", "alert_acknowledged")
    assert all(world["n1"].email not in m.to for m in smtp.received)


# aiosmtpd's stop() leaves the server side of a cut connection to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_restarted_smtp_server_costs_no_retry(smtp) -> None:
    from consult.notify.channels import Outgoing
    from consult.notify.smtp import SmtpChannel, SmtpOptions

    options = SmtpOptions(
        host=smtp.host, port=smtp.port, sender="V <v@vigil.test>", ca_file=smtp.ca_file, probe_after_s=0
    )
    ch = SmtpChannel(options)
    try:
        ch.send(Outgoing("restart-1", "email", "n1@o1.test", "Vigil: test", "text"), lambda: True)
        smtp.restart()  # the channel's pooled connection is now dead
        ch.send(Outgoing("restart-2", "email", "n1@o1.test", "Vigil: test", "text"), lambda: True)
    finally:
        ch.close()
    assert len(smtp.wait_for(2)) == 2
    smtp.stop()
    import gc

    gc.collect()  # the cut connection's socket is reclaimed here, under this test's warning filter

"""``vigil notify run`` as real processes against a real SMTP server: a worker killed with SIGKILL
mid-send and restarted delivers each notification exactly once; killed in the window after the
server took the message and before the worker recorded it, the notification is sent again with the
same Message-ID (or failed as outcome_unknown, by setting); two workers never send one twice.

The SMTP server's gates are the barriers: the test kills the worker while the server holds it at a
known point of the SMTP transaction, so nothing here depends on timing."""

from __future__ import annotations

from collections import Counter

import psycopg

from store import notification_delivery as delivery
from store import notification_outbox as outbox
from store.notification_outbox import NewNotification, enqueue
from tests.clinician_api.world import T0
from tests.consult.notify.conftest import kill9, notify_env, start_worker, stop


def queue(url: str, user_id: str, n: int, prefix: str) -> list[int]:
    ids = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for i in range(n):
            outbox_id = enqueue(
                conn,
                NewNotification(
                    org_id="o1",
                    channel="email",
                    recipient_user_id=user_id,
                    kind="break_glass_review",
                    idempotency_key=f"{prefix}:{i}",
                    params={"grant_id": str(i)},
                ),
                T0,
            )
            ids.append(outbox_id)
    return ids


def notifications(url: str, ids: list[int]) -> list[outbox.NotificationRow]:
    with psycopg.connect(url) as conn:
        return [outbox.get_notification(conn, i) for i in ids]


def attempt_outcomes(url: str, outbox_id: int) -> list[str | None]:
    with psycopg.connect(url) as conn:
        return [a.outcome for a in delivery.attempts_of(conn, outbox_id)]


def sending_rows(url: str) -> dict[int, str]:
    """outbox id -> phase of the rows held by an attempt (a worker claims a batch at once)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT outbox_id, send_phase FROM notification_outbox WHERE state = 'sending'").fetchall()
    return dict(rows)


def test_killed_mid_send_then_restarted_sends_each_exactly_once(world, smtp, tmp_path) -> None:
    ids = queue(world.url, world["n1"].user_id, 5, "crash-rcpt")
    env = notify_env(world.url, smtp)
    log = tmp_path / "worker.log"
    smtp.rcpt_gate.enabled = True
    first = start_worker(env, log)
    try:
        assert smtp.rcpt_gate.held.wait(30), log.read_text()
        # The batch is claimed; one is mid-transaction at the server, none has sent its final dot.
        assert sending_rows(world.url) == dict.fromkeys(ids, "prepared")
        kill9(first)
    finally:
        smtp.rcpt_gate.release()
        stop(first)
    assert smtp.count() == 0
    second = start_worker(env, log)
    try:
        smtp.wait_for(5)
        # Positive signal that the worker is done: every row left 'sending' and 'pending'.
        _wait_all_sent(world.url, ids)
    finally:
        assert stop(second) == 0, log.read_text()
    assert smtp.count() == 5
    assert set(smtp.by_message_id().values()) == {1}
    assert {r.state for r in notifications(world.url, ids)} == {"sent"}
    assert {tuple(attempt_outcomes(world.url, i)) for i in ids} == {("interrupted", "sent")}


def _wait_all_sent(url: str, ids: list[int], timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while {r.state for r in notifications(url, ids)} - {"sent", "failed"}:
        assert time.monotonic() < deadline, [r.state for r in notifications(url, ids)]
        time.sleep(0.05)


def _kill_after_the_dot(world, smtp, tmp_path, **extra: str) -> tuple[list[int], int, str]:
    ids = queue(world.url, world["n1"].user_id, 3, "crash-dot")
    env = notify_env(world.url, smtp, **extra)
    log = tmp_path / "worker.log"
    smtp.data_gate.enabled = True
    first = start_worker(env, log)
    try:
        assert smtp.data_gate.held.wait(30), log.read_text()
        phases = sending_rows(world.url)
        # The one at the server recorded its commit point before the dot; the rest of the batch did not.
        (held,) = [i for i, phase in phases.items() if phase == "committing"]
        assert sorted(phases.values()) == ["committing", "prepared", "prepared"]
        kill9(first)
    finally:
        smtp.data_gate.release()  # the server now takes the message its sender never heard about
        stop(first)
    smtp.wait_for(1)
    second = start_worker(env, log)
    try:
        _wait_all_sent(world.url, ids)
    finally:
        assert stop(second) == 0, log.read_text()
    return ids, held, log.read_text()


def test_killed_after_the_server_took_the_message_resends_it_with_the_same_message_id(world, smtp, tmp_path) -> None:
    ids, held, _ = _kill_after_the_dot(world, smtp, tmp_path)
    # At least once: the one message in the window arrived twice, with one Message-ID, which a
    # mailbox that deduplicates by Message-ID shows once; the others exactly once.
    assert smtp.count() == 4
    copies = smtp.by_message_id()
    assert len(copies) == 3
    assert sorted(copies.values()) == [1, 1, 2]
    (row,) = [r for r in notifications(world.url, ids) if r.outbox_id == held]
    assert copies[row.provider_ref] == 2
    assert attempt_outcomes(world.url, held) == ["unknown", "sent"]


def test_at_most_once_setting_fails_the_unknown_one_instead(world, smtp, tmp_path) -> None:
    ids, held, _ = _kill_after_the_dot(world, smtp, tmp_path, VIGIL_NOTIFY_UNKNOWN_OUTCOME="fail")
    assert smtp.count() == 3
    assert set(smtp.by_message_id().values()) == {1}
    states = {r.outbox_id: (r.state, r.last_error) for r in notifications(world.url, ids)}
    assert states.pop(held) == ("failed", "outcome_unknown")
    assert set(states.values()) == {("sent", None)}


def test_two_workers_racing_never_send_one_twice(world, smtp, tmp_path) -> None:
    ids = queue(world.url, world["n1"].user_id, 200, "race")
    env = notify_env(world.url, smtp, VIGIL_NOTIFY_BATCH="5")
    a = start_worker(env, tmp_path / "a.log")
    b = start_worker(env, tmp_path / "b.log")
    try:
        smtp.wait_for(200, timeout=120)
        _wait_all_sent(world.url, ids, timeout=60)
    finally:
        assert stop(a) == 0
        assert stop(b) == 0
    assert smtp.count() == 200
    assert set(smtp.by_message_id().values()) == {1}
    with psycopg.connect(world.url) as conn:
        per_worker = Counter(r[0] for r in conn.execute("SELECT worker_key FROM notification_attempts").fetchall())
        assert conn.execute("SELECT count(*) FROM notification_attempts WHERE outcome <> 'sent'").fetchone() == (0,)
    assert sum(per_worker.values()) == 200  # one attempt per notification, whoever made it

"""Hostile or broken input is one notification's failure, never the worker's: a row whose params
cannot be rendered, a kind nobody knows, an address header injection, a channel without an
address, a gateway answering garbage. And a failure is visible from the command line."""

from __future__ import annotations

import json
import subprocess

import psycopg

from store import notification_outbox as outbox
from store.notification_outbox import NewNotification, enqueue
from tests.clinician_api.world import T0
from tests.consult.notify.conftest import VIGIL


def queue(url: str, user_id: str, key: str, *, kind: str, params: dict, channel: str = "email") -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return enqueue(
            conn,
            NewNotification(
                org_id="o1", channel=channel, recipient_user_id=user_id, kind=kind, idempotency_key=key, params=params
            ),
            T0,
        )


def test_bad_rows_fail_alone_and_show_on_the_command_line(world, worker, smtp) -> None:
    n1 = world["n1"].user_id
    bad_params = queue(world.url, n1, "bad-1", kind="alert_care_team", params={"alert_id": "1; DROP TABLE users"})
    unknown = queue(world.url, n1, "bad-2", kind="no_such_kind", params={})
    no_number = queue(world.url, n1, "bad-3", kind="break_glass_review", params={}, channel="sms")
    good = queue(world.url, n1, "good-1", kind="break_glass_review", params={"grant_id": "g"})
    with psycopg.connect(world.url, autocommit=True) as conn:
        injected = enqueue(
            conn,
            NewNotification(
                org_id="o1",
                channel="email",
                recipient_user_id=world["c1"].user_id,
                kind="break_glass_review",
                idempotency_key="bad-4",
                params={},
            ),
            T0,
        )
        conn.execute(
            "UPDATE users SET email = %s WHERE user_id = %s",
            ("c1@o1.test\r\nbcc: spy@evil.test", world["c1"].user_id),
        )
    from consult.notify.webhook import WebhookChannel, WebhookOptions

    worker._channels["sms"] = WebhookChannel(
        WebhookOptions(channel="sms", url="http://127.0.0.1:9/never", secret=b"0123456789abcdef")
    )
    stats = worker.run_once()
    assert stats.sent == 1
    assert stats.failed == 4
    with psycopg.connect(world.url) as conn:
        got = {
            i: (r.state, r.last_error)
            for i in (bad_params, unknown, no_number, injected, good)
            if (r := outbox.get_notification(conn, i))
        }
    assert got == {
        bad_params: ("failed", "bad_params"),
        unknown: ("failed", "unknown_template"),
        no_number: ("failed", "no_address"),
        injected: ("failed", "bad_address"),
        good: ("sent", None),
    }
    (m,) = smtp.wait_for(1)
    assert m.to == (world["n1"].email,)

    out = subprocess.run(
        [*VIGIL, "notify", "list", "--state", "failed", "--database-url", world.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "VIGIL_CONFIG": ""},
    ).stdout
    listed = [json.loads(line) for line in out.splitlines()]
    assert {(x["outbox_id"], x["last_error"]) for x in listed} == {
        (bad_params, "bad_params"),
        (unknown, "unknown_template"),
        (no_number, "no_address"),
        (injected, "bad_address"),
    }
    assert "evil" not in out
    assert "DROP" not in out

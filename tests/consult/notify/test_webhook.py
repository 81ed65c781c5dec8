"""SMS and push through the signed-webhook adapter, against a real local HTTP gateway that checks
the HMAC signature and its timestamp and sends each Idempotency-Key once: retries back off on 503
(honouring Retry-After), a 400 fails for good, a resent key is not delivered twice, a replayed or
re-signed body is refused."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from consult.notify.channels import Outgoing
from consult.notify.errors import DeliveryError
from consult.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookOptions,
    sign,
    verify_signature,
)
from store import notification_delivery as delivery
from store import notification_outbox as outbox
from store import notification_prefs as prefs
from store.notification_outbox import NewNotification, enqueue
from tests.clinician_api.world import T0
from tests.consult.notify.conftest import make_worker
from vigil_testkit.net import free_port

SECRET = b"gateway-secret-0123456789"


class Gateway:
    """A gateway: verifies signatures, answers from a script, delivers each key once."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []  # (status, headers) per request, then 200
        self.delivered: dict[str, dict] = {}
        self.requests = 0
        self.refused = 0
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.requests += 1
                if not verify_signature(
                    SECRET,
                    self.headers.get(TIMESTAMP_HEADER),
                    self.headers.get(SIGNATURE_HEADER),
                    body,
                    now=time.time(),
                ):
                    gateway.refused += 1
                    return self._answer(401, {})
                if gateway.script:
                    status, headers = gateway.script.pop(0)
                    return self._answer(status, {}, headers)
                key = self.headers["Idempotency-Key"]
                gateway.delivered.setdefault(key, json.loads(body))
                return self._answer(200, {"id": f"gw-{len(gateway.delivered)}", "status": "delivered"})

            def _answer(self, status: int, doc: dict, headers: dict | None = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    g = Gateway()
    try:
        yield g
    finally:
        g.stop()


def channel(gateway: Gateway, name: str = "sms") -> WebhookChannel:
    return WebhookChannel(WebhookOptions(channel=name, url=gateway.url, secret=SECRET, timeout_s=5))


def test_signature_checks() -> None:
    body = b'{"v":1}'
    sig = sign(SECRET, 1000, body)
    assert verify_signature(SECRET, "1000", sig, body, now=1000)
    assert not verify_signature(SECRET, "1000", sig, body + b" ", now=1000)  # altered body
    assert not verify_signature(SECRET, "1001", sig, body, now=1001)  # re-stamped
    assert not verify_signature(b"another-secret-000000", "1000", sig, body, now=1000)
    assert not verify_signature(SECRET, "1000", sig, body, now=1000 + 301)  # replayed late
    assert not verify_signature(SECRET, "1e3", sig, body, now=1000)
    assert not verify_signature(SECRET, None, sig, body, now=1000)


def test_a_resent_key_is_delivered_once(gateway) -> None:
    ch = channel(gateway)
    msg = Outgoing("key-1", "sms", "+15551234567", "Vigil", "Vigil: a new alert needs your attention")
    first = ch.send(msg, lambda: True)
    second = ch.send(msg, lambda: True)
    assert (first.provider_ref, first.delivered) == ("gw-1", True)
    assert second.provider_ref == "gw-1"
    assert list(gateway.delivered) == ["key-1"]
    assert gateway.delivered["key-1"]["to"] == "+15551234567"


def test_answers_are_classified(gateway) -> None:
    ch = channel(gateway, "push")
    msg = Outgoing("key-2", "push", "token", "t", "x")
    gateway.script = [(503, {"Retry-After": "7"}), (400, {})]
    with pytest.raises(DeliveryError) as busy:
        ch.send(msg, lambda: True)
    assert (busy.value.code, busy.value.permanent, busy.value.retry_after_s) == ("http_503", False, 7.0)
    with pytest.raises(DeliveryError) as bad:
        ch.send(msg, lambda: True)
    assert (bad.value.code, bad.value.permanent) == ("http_400", True)
    wrong = WebhookChannel(WebhookOptions(channel="sms", url=gateway.url, secret=b"not-the-gateway-secret"))
    with pytest.raises(DeliveryError) as refused:
        wrong.send(msg, lambda: True)
    assert refused.value.code == "http_401"
    assert gateway.refused == 1
    with pytest.raises(DeliveryError) as superseded:  # no longer ours: nothing is posted
        ch.send(msg, lambda: False)
    assert superseded.value.code == "superseded"
    assert gateway.requests == 3


def test_the_worker_retries_a_busy_gateway_then_delivers(world, smtp, clock, gateway) -> None:
    with psycopg.connect(world.url, autocommit=True) as conn:
        prefs.put_preferences(conn, world["n1"].user_id, "o1", prefs.Preferences(sms_number="+15550001111"), T0)
        outbox_id = enqueue(
            conn,
            NewNotification(
                org_id="o1",
                channel="sms",
                recipient_user_id=world["n1"].user_id,
                kind="break_glass_review",
                idempotency_key="sms-1",
                params={"grant_id": "g"},
            ),
            T0,
        )
    gateway.script = [(503, {"Retry-After": "7"}), (502, {})]
    w = make_worker(world.url, smtp, clock, channels={"sms": channel(gateway)})
    try:
        assert w.run_once().retried == 1
        clock.advance(7)
        assert w.run_once().retried == 1
        with psycopg.connect(world.url) as conn:
            row = outbox.get_notification(conn, outbox_id)
        clock.set(row.next_attempt_at)
        assert w.run_once().delivered == 1
    finally:
        w.close()
    with psycopg.connect(world.url) as conn:
        attempts = delivery.attempts_of(conn, outbox_id)
        row = outbox.get_notification(conn, outbox_id)
    # The gateway's hint (7 s), then the policy's second delay (60 s).
    assert [(a.outcome, a.error) for a in attempts] == [
        ("retry", "http_503"),
        ("retry", "http_502"),
        ("delivered", None),
    ]
    assert [a.next_attempt_at - a.finished_at for a in attempts[:2]] == [timedelta(seconds=7), timedelta(seconds=60)]
    assert (row.state, row.provider_ref) == ("delivered", "gw-1")
    assert gateway.delivered["sms-1"]["text"].startswith("Vigil: an emergency access needs your review")

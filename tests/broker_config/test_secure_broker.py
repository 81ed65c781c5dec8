"""The rendered production configuration on a real Mosquitto: passwords, ACLs, TLS (catalogue 17, 21)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from broker_config.ca import create_ca, issue_server_certificate
from broker_config.passwords import INGEST_USERNAME, hash_password, verify_password
from rpm_core.topics import ingest_subscription
from tests.support.broker import SecureBroker, connect_result, start_secure_broker, tls_context

NOT_AUTHORIZED = 0x87


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecureBroker]:
    b = start_secure_broker(tmp_path / "broker")
    try:
        yield b
    finally:
        b.stop()


def test_our_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "s3cret"], check=True)
    theirs = pw.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", theirs)
    assert not verify_password("wrong", theirs)
    ours = hash_password("s3cret", salt=b"0123456789ab")
    assert ours.startswith("$7$101$")
    assert verify_password("s3cret", ours)


def test_mosquitto_accepts_our_hashes_and_refuses_bad_passwords(broker: SecureBroker) -> None:
    pw = broker.add_agent("clinic-1", "agt-a")
    ok = connect_result(broker.client("agt-a", "agt-a", pw), broker.host, broker.port)
    assert getattr(ok, "value", None) == 0, broker.proc.log()
    for user, password in (("agt-a", "nope"), ("nobody", pw), (None, None)):
        rc = connect_result(broker.client("x", user, password), broker.host, broker.port)
        assert getattr(rc, "is_failure", False), (user, rc)
    ingest = connect_result(broker.client("i", INGEST_USERNAME, broker.ingest_password), broker.host, broker.port)
    assert getattr(ingest, "value", None) == 0


class Probe:
    """A connected client that records PUBACK reason codes and received messages."""

    def __init__(self, broker: SecureBroker, username: str, password: str) -> None:
        self.client = broker.client(f"probe-{username}", username, password)
        self.acks: dict[int, int] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self.suback: list[int] = []
        self.event = threading.Event()
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, m: (self.messages.append(m), self.event.set())
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: (
            self.suback.extend(c.value for c in codes),
            self.event.set(),
        )
        assert getattr(connect_result(self.client, broker.host, broker.port, keep=True), "value", None) == 0

    def _on_publish(self, _c, _u, mid, reason, _props) -> None:
        self.acks[mid] = reason.value
        self.event.set()

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 10
        while info.mid not in self.acks:
            assert time.monotonic() < deadline, "no PUBACK"
            self.event.wait(0.05)
            self.event.clear()
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> int:
        self.suback.clear()
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 10
        while not self.suback:
            assert time.monotonic() < deadline, "no SUBACK"
            self.event.wait(0.05)
            self.event.clear()
        return self.suback[0]

    def wait_messages(self, n: int, timeout: float = 10) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            self.event.wait(0.05)
            self.event.clear()
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_acl_confines_each_agent_to_its_own_topics(broker: SecureBroker) -> None:
    pa, pb = broker.add_agent("clinic-1", "agt-a"), broker.add_agent("clinic-1", "agt-b")
    ingest = Probe(broker, INGEST_USERNAME, broker.ingest_password)
    a, b = Probe(broker, "agt-a", pa), Probe(broker, "agt-b", pb)
    try:
        assert ingest.subscribe(ingest_subscription()) == 1
        assert a.publish("vigil/v1/clinic-1/agt-a/up/readings", b"mine") == 0
        # Catalogue 17: A on B's topic, on another org's, or on a downlink is refused (0x87).
        for topic in (
            "vigil/v1/clinic-1/agt-b/up/readings",
            "vigil/v1/clinic-2/agt-a/up/readings",
            "vigil/v1/clinic-1/agt-a/down/receipts",
            "vigil/v1/clinic-1/agt-b/up",
        ):
            assert a.publish(topic, b"forged") == NOT_AUTHORIZED, topic
        got = ingest.wait_messages(1)
        time.sleep(0.3)  # a denied message would arrive right behind the good one
        assert [m.payload for m in ingest.messages] == [b"mine"], got
        # Agents read only their own downlink. Mosquitto's ACL file grants SUBSCRIBE to anything and
        # checks "read" on delivery, so B's snooping subscriptions succeed and deliver nothing.
        for snoop in ("vigil/v1/clinic-1/agt-b/down/#", "vigil/v1/clinic-1/agt-a/down/#", "vigil/v1/#", "$share/x/#"):
            assert b.subscribe(snoop) < 0x80
        assert ingest.publish("vigil/v1/clinic-1/agt-a/down/receipts", b"for-a") == 0
        assert a.publish("vigil/v1/clinic-1/agt-a/up/status", b"status-of-a") == 0
        assert ingest.publish("vigil/v1/clinic-1/agt-b/down/receipts", b"for-b") == 0
        # Overlapping filters: one copy per matching subscription (no longer spaced out by Nagle).
        assert {m.payload for m in b.wait_messages(1)} == {b"for-b"}
        time.sleep(0.3)
        assert {m.payload for m in b.messages} == {b"for-b"}  # overlapping filters: several copies
        # The ingest account writes downlinks only.
        assert ingest.publish("vigil/v1/clinic-1/agt-b/up/readings", b"fake") == NOT_AUTHORIZED
    finally:
        for p in (ingest, a, b):
            p.close()


def test_revoking_an_agent_disconnects_it_on_reload(broker: SecureBroker) -> None:
    pw = broker.add_agent("clinic-1", "agt-a")
    a = Probe(broker, "agt-a", pw)
    dropped = threading.Event()
    a.client.on_disconnect = lambda *_args: dropped.set()
    try:
        assert a.publish("vigil/v1/clinic-1/agt-a/up/readings") < 0x80  # 0x10: no subscribers, fine
        broker.revoke("agt-a")
        # On SIGHUP Mosquitto re-checks connected clients against the new password file.
        assert dropped.wait(10), broker.proc.log()
    finally:
        a.close()
    rc = connect_result(broker.client("agt-a2", "agt-a", pw), broker.host, broker.port)
    assert getattr(rc, "is_failure", False)


def handshake(port: int, ctx: ssl.SSLContext, server_name: str) -> str | ssl.SSLError:
    """A TLS handshake with the broker as paho does it; the negotiated version, or the error."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                return str(tls.version())
        except ssl.SSLError as exc:
            return exc


def test_foreign_ca_wrong_name_and_old_tls_get_no_connection(broker: SecureBroker, tmp_path: Path) -> None:
    # Catalogue 21. The right CA, name and version succeed (and paho logs in with them).
    assert handshake(broker.port, tls_context(broker.layout.ca), "localhost") in ("TLSv1.2", "TLSv1.3")
    ok = connect_result(broker.client("i", INGEST_USERNAME, broker.ingest_password), "127.0.0.1", broker.port)
    assert getattr(ok, "value", None) == 0
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(create_ca(now=datetime.now(UTC), common_name="Evil CA").cert_pem())
    assert isinstance(handshake(broker.port, tls_context(foreign), "localhost"), ssl.SSLCertVerificationError)
    wrong = handshake(broker.port, tls_context(broker.layout.ca), "broker.elsewhere.example")
    assert isinstance(wrong, ssl.SSLCertVerificationError)
    assert "mismatch" in str(wrong)
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(broker.layout.ca))
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer it: the broker must refuse
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
            old.minimum_version = old.maximum_version = version
        refused = handshake(broker.port, old, "localhost")
        assert isinstance(refused, ssl.SSLError), version
        assert "NO_PROTOCOLS_AVAILABLE" not in str(refused)  # the hello was sent; the broker said no
    # No plaintext fallback: an MQTT CONNECT in the clear gets no CONNACK.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
        raw.sendall(bytes.fromhex("101000044d5154540502003c0000036162630000"))
        try:
            answer = raw.recv(4)
        except (ConnectionResetError, TimeoutError):
            answer = b""
        assert not answer.startswith(b"\x20")


def test_expired_server_certificate_gets_no_connection(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = create_ca(now=now - timedelta(days=800))
    expired = issue_server_certificate(
        ca, ["localhost", "127.0.0.1"], now=now, not_before=now - timedelta(days=400), valid=timedelta(days=397)
    )
    b = start_secure_broker(tmp_path / "b", ca=ca, server_cert=expired)
    try:
        rc = handshake(b.port, tls_context(b.layout.ca), "localhost")
        assert isinstance(rc, ssl.SSLCertVerificationError)
        assert "expired" in str(rc)
    finally:
        b.stop()

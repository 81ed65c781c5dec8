"""The rendered production configuration on a real Mosquitto: accounts and grants (dynamic security), TLS
(catalogue 17, 21)."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import subprocess
import threading
import time
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

from broker_config.accounts import INGEST_USERNAME, AclType, BrokerAccount, Grant, agent_account
from broker_config.ca import create_ca, issue_server_certificate
from broker_config.dynsec import parse_file, render_dynsec
from broker_config.passwords import hash_password, new_password, split_hash, verify_password
from broker_config.render import persisted_state
from rpm_core.topics import ingest_subscription
from vigil_testkit.broker import SecureBroker, connect_result, start_secure_broker, tls_context

NOT_AUTHORIZED = 0x87


def test_our_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "s3cret"], check=True)
    theirs = pw.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", theirs)
    assert not verify_password("wrong", theirs)
    ours = hash_password("s3cret", salt=b"0123456789ab")
    assert ours.startswith("$7$101$")
    assert verify_password("s3cret", ours)
    parts = split_hash(ours)
    assert parts is not None
    assert (parts.iterations, parts.salt_b64) == (101, "MDEyMzQ1Njc4OWFi")
    for bad in ("$7$0$MDEyMzQ1Njc4OWFi$" + parts.digest_b64, "$6$101$x$y", ours[:-4], ""):
        assert split_hash(bad) is None


def test_mosquitto_accepts_our_hashes_and_refuses_bad_passwords(broker: SecureBroker) -> None:
    pw = broker.add_agent("clinic-1", "agt-a")
    ok = connect_result(broker.client("agt-a", "agt-a", pw), broker.host, broker.port)
    assert getattr(ok, "value", None) == 0, broker.proc.log()
    for user, password in (("agt-a", "nope"), ("nobody", pw), (None, None)):
        rc = connect_result(broker.client("agt-a", user, password), broker.host, broker.port)
        assert getattr(rc, "is_failure", False), (user, rc)
    ingest = connect_result(
        broker.client(INGEST_USERNAME, INGEST_USERNAME, broker.ingest_password), broker.host, broker.port
    )
    assert getattr(ingest, "value", None) == 0


def test_every_account_may_use_its_own_client_id_only(broker: SecureBroker) -> None:
    pa, _ = broker.add_agent("clinic-1", "agt-a"), broker.add_agent("clinic-1", "agt-b")
    for client_id in ("agt-b", INGEST_USERNAME, "vigil-admin", "agt-a-2", ""):
        rc = connect_result(broker.client(client_id, "agt-a", pa), broker.host, broker.port)
        assert getattr(rc, "value", None) == NOT_AUTHORIZED, (client_id, rc)
    for client_id in ("agt-a", "probe"):
        rc = connect_result(broker.client(client_id, INGEST_USERNAME, broker.ingest_password), broker.host, broker.port)
        assert getattr(rc, "value", None) == NOT_AUTHORIZED, (client_id, rc)


class Probe:
    """A connected client that records PUBACK reason codes and received messages."""

    def __init__(
        self, broker: SecureBroker, username: str, password: str, *, client_id: str | None = None, unix: bool = False
    ) -> None:
        # Every account is bound to its client id = its username. ``unix``: over ingest's own listener.
        make = broker.socket_client if unix else broker.client
        self.client = make(client_id or username, username, password)
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
        where = (str(broker.ingest_socket), 1) if unix else (broker.host, broker.port)
        assert getattr(connect_result(self.client, *where, keep=True), "value", None) == 0

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

    def wait_for(self, payload: bytes, *, copies: int, timeout: float = 10) -> list[mqtt.MQTTMessage]:
        """Every message received once ``copies`` copies of ``payload`` (a barrier) are in."""
        deadline = time.monotonic() + timeout
        while sum(m.payload == payload for m in self.messages) < copies:
            assert time.monotonic() < deadline, f"{payload!r} did not arrive {copies} time(s)"
            self.event.wait(0.05)
            self.event.clear()
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_grants_confine_each_agent_to_its_own_topics(broker: SecureBroker) -> None:
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
        # Agents subscribe to their own downlink only: every other filter is refused in the SUBACK
        # (the ACL file used to grant them and filter at delivery).
        for snoop in ("vigil/v1/clinic-1/agt-a/down/#", "vigil/v1/#", "$share/x/#", "vigil/v1/clinic-1/+/down/#"):
            assert b.subscribe(snoop) == NOT_AUTHORIZED, snoop
        assert b.subscribe("vigil/v1/clinic-1/agt-b/down/#") == 1
        assert b.subscribe("vigil/v1/clinic-1/agt-b/down/receipts") == 1
        # Nobody else's subscription matches A's downlink any more: 0x10, no matching subscribers.
        assert ingest.publish("vigil/v1/clinic-1/agt-a/down/receipts", b"for-a") == 0x10
        assert a.publish("vigil/v1/clinic-1/agt-a/up/status", b"status-of-a") == 0
        assert ingest.publish("vigil/v1/clinic-1/agt-b/down/receipts", b"for-b") == 0
        # Barriers: one more message on each path. A client gets its messages in publish order, so
        # once a barrier is in, every copy of what was published before it (and every forged
        # message the broker had let through) is in too.
        assert a.publish("vigil/v1/clinic-1/agt-a/up/status", b"barrier-a") == 0
        assert ingest.publish("vigil/v1/clinic-1/agt-b/down/receipts", b"barrier-b") == 0
        # A's readings, then its status, each once; the forged ones never came.
        got = ingest.wait_for(b"barrier-a", copies=1)
        assert [m.payload for m in got] == [b"mine", b"status-of-a", b"barrier-a"], got
        # B gets its own receipt once per matching subscription (two overlapping filters), never A's.
        got = b.wait_for(b"barrier-b", copies=2)
        assert Counter(m.payload for m in got) == Counter({b"for-b": 2, b"barrier-b": 2}), got
        # The ingest account publishes downlinks only, and subscribes to nothing but its shared filter.
        assert ingest.publish("vigil/v1/clinic-1/agt-b/up/readings", b"fake") == NOT_AUTHORIZED
        assert ingest.subscribe("vigil/v1/+/+/up/#") == NOT_AUTHORIZED
        assert ingest.subscribe("$share/other/vigil/v1/+/+/up/#") == NOT_AUTHORIZED
    finally:
        for p in (ingest, a, b):
            p.close()


def test_ingest_socket_admits_accounts_only_with_the_same_grants(broker: SecureBroker) -> None:
    """Ingest's own listener, the Unix socket: local, mode 0770 for the broker's user; no anonymous
    access, passwords and client-id bindings as on TLS; an enrolled agent that reaches it (the
    socket's own user or group: on the broker's host) gains nothing over its TLS grants."""
    path = broker.ingest_socket
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o770, oct(st.st_mode)  # no access for other users
    assert "listener 0 " + str(path) in broker.layout.conf.read_text()
    sock = str(path)
    pa, pb = broker.add_agent("clinic-1", "agt-a"), broker.add_agent("clinic-1", "agt-b")
    refused = (
        ("anon", None, None),
        ("agt-a", "agt-a", "wrong"),
        ("agt-a", "nobody", pa),
        (INGEST_USERNAME, "agt-a", pa),  # an agent may not take ingest's client id (and session) here either
        ("agt-b", "agt-a", pa),
        ("probe", INGEST_USERNAME, broker.ingest_password),
    )
    for client_id, user, password in refused:
        rc = connect_result(broker.socket_client(client_id, user, password), sock, 1)
        assert getattr(rc, "is_failure", False), (client_id, user, rc)
    ingest = Probe(broker, INGEST_USERNAME, broker.ingest_password, unix=True)
    hostile = Probe(broker, "agt-a", pa, unix=True)  # an enrolled agent on the socket
    b = Probe(broker, "agt-b", pb)  # over TLS
    try:
        assert ingest.subscribe(ingest_subscription()) == 1
        # The agent may not join ingest's group, read anyone's uplink or another agent's downlink.
        for snoop in (ingest_subscription(), "vigil/v1/#", "$share/x/#", "vigil/v1/clinic-1/agt-b/down/#", "#"):
            assert hostile.subscribe(snoop) == NOT_AUTHORIZED, snoop
        # Nor publish as another agent, as the server (downlinks) or to the control API.
        for topic in (
            "vigil/v1/clinic-1/agt-b/up/readings",
            "vigil/v1/clinic-1/agt-b/down/receipts",
            "vigil/v1/clinic-1/agt-a/down/receipts",
            "$CONTROL/dynamic-security/v1",
        ):
            assert hostile.publish(topic, b"forged") == NOT_AUTHORIZED, topic
        # Its own uplink is what it could publish over TLS too; it reaches ingest on the socket once.
        assert hostile.publish("vigil/v1/clinic-1/agt-a/up/readings", b"own") == 0
        assert b.publish("vigil/v1/clinic-1/agt-b/up/readings", b"barrier-b") == 0
        got = ingest.wait_for(b"barrier-b", copies=1)
        assert Counter(m.payload for m in got) == Counter({b"own": 1, b"barrier-b": 1}), got
        # Ingest on the socket publishes a receipt to an agent on TLS.
        assert b.subscribe("vigil/v1/clinic-1/agt-b/down/#") == 1
        assert ingest.publish("vigil/v1/clinic-1/agt-b/down/receipts", b"receipt-b") == 0
        assert [m.payload for m in b.wait_for(b"receipt-b", copies=1)] == [b"receipt-b"]
    finally:
        for p in (ingest, hostile, b):
            p.close()


def test_revoking_an_agent_disconnects_it_at_once(broker: SecureBroker) -> None:
    pw = broker.add_agent("clinic-1", "agt-a")
    a = Probe(broker, "agt-a", pw)
    dropped = threading.Event()
    reasons: list[int] = []
    a.client.on_disconnect = lambda _c, _u, _f, reason, _p: (reasons.append(reason.value), dropped.set())
    try:
        assert a.publish("vigil/v1/clinic-1/agt-a/up/readings") < 0x80  # 0x10: no subscribers, fine
        broker.revoke("agt-a")
        # deleteClient through the control API disconnects the agent's connection (0x98, administrative action).
        assert dropped.wait(10), broker.proc.log()
        assert reasons[0] == 0x98
    finally:
        a.close()
    rc = connect_result(broker.client("agt-a", "agt-a", pw), broker.host, broker.port)
    assert getattr(rc, "is_failure", False)


def test_the_file_mosquitto_writes_is_the_file_we_render(broker: SecureBroker) -> None:
    """After a change through the control API the broker rewrites its JSON: same accounts, grants,
    bindings and default access as our own rendering of them (the file is read back, not trusted)."""
    broker.add_agent("clinic-1", "agt-a")
    theirs = persisted_state(broker.layout)
    ours = parse_file(json.loads(render_dynsec(broker.accounts())))
    assert theirs is not None
    assert theirs.clients == ours.clients
    assert theirs.roles == ours.roles
    assert (
        theirs.default_access
        == ours.default_access
        == {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        }
    )


def test_sync_reconciles_a_running_broker(broker: SecureBroker) -> None:
    pa = broker.add_agent("clinic-1", "agt-a")
    stray_pw = new_password()
    wide = BrokerAccount("stray", hash_password(stray_pw), (Grant(AclType.SUBSCRIBE_PATTERN, "#"),))
    with broker.control() as ctl:
        ctl.create(wide, stray_pw)  # an account the database never knew
        # agt-a's role widened by hand, and its client id binding removed
        ctl.run([{"command": "createRole", "rolename": "agt-a-extra", "acls": [g.to_json() for g in wide.grants]}])
        ctl.run(
            [{"command": "modifyClient", "username": "agt-a", "clientid": "", "roles": [{"rolename": "agt-a-extra"}]}]
        )
    assert (
        getattr(connect_result(broker.client("stray", "stray", stray_pw), broker.host, broker.port), "value", None) == 0
    )
    unbound = connect_result(broker.client("x", "agt-a", pa), broker.host, broker.port)
    assert getattr(unbound, "value", None) == 0  # the binding is gone: what sync must repair
    broker.sync()
    assert getattr(
        connect_result(broker.client("stray", "stray", stray_pw), broker.host, broker.port), "is_failure", False
    )
    assert getattr(connect_result(broker.client("x", "agt-a", pa), broker.host, broker.port), "value", None) == 0x87
    a = Probe(broker, "agt-a", pa, client_id="agt-a")
    try:
        assert a.subscribe("#") == NOT_AUTHORIZED
        assert a.subscribe("vigil/v1/clinic-1/agt-a/down/#") == 1
    finally:
        a.close()
    with broker.control() as ctl:
        state = ctl.state()
    assert set(state.clients) == {a.username for a in broker.accounts()}
    assert state.clients["agt-a"].roles == ("agt-a",)
    assert set(state.roles) == {a.rolename for a in broker.accounts()}
    assert agent_account("clinic-1", "agt-a", hash_password(pa)).grants  # (what the role holds again)


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
    ok = connect_result(
        broker.client(INGEST_USERNAME, INGEST_USERNAME, broker.ingest_password), "127.0.0.1", broker.port
    )
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

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.errors import BrokerConfigError
from broker_config.mosquitto import (
    TLS12_CIPHERS,
    TLS13_SUITES,
    UNIX_PATH_MAX,
    DynsecFiles,
    MosquittoSpec,
    TlsFiles,
    render_mosquitto,
)
from vigil_testkit.mosquitto import MosquittoProcess


def test_rendered_config_has_the_production_directives(tmp_path: Path) -> None:
    tls = TlsFiles(cafile=tmp_path / "ca.pem", certfile=tmp_path / "s.pem", keyfile=tmp_path / "s.key")
    spec = MosquittoSpec(
        data_dir=tmp_path / "d",
        port=8883,
        tls=tls,
        dynsec=DynsecFiles(plugin=tmp_path / "dynsec.so", config_file=tmp_path / "dynsec.json"),
        pid_file=tmp_path / "m.pid",
    )
    text = render_mosquitto(spec)
    lines = {line.strip() for line in text.splitlines()}
    for expected in (
        "allow_anonymous false",
        "listener 8883 127.0.0.1",
        "tls_version tlsv1.2",
        "require_certificate false",
        "use_identity_as_username false",
        f"plugin {tmp_path / 'dynsec.so'}",
        f"plugin_opt_config_file {tmp_path / 'dynsec.json'}",
        f"ciphers {TLS12_CIPHERS}",
        f"ciphers_tls1.3 {TLS13_SUITES}",
        "log_dest stderr",
        f"pid_file {tmp_path / 'm.pid'}",
        "persistence true",
        "max_inflight_messages 1000",
        "set_tcp_nodelay true",
    ):
        assert expected in lines
    assert "$" not in text  # every template variable was filled
    assert "password_file" not in text  # the ACL file granted every SUBSCRIBE: not used any more
    assert "acl_file" not in text


def test_spec_refuses_a_listener_nobody_could_authenticate_to(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MosquittoSpec(data_dir=tmp_path, allow_anonymous=False)


def roundtrip(broker: MosquittoProcess, topic: str, payload: bytes) -> bytes:
    got: list[bytes] = []
    done = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-sub", protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, msg: (got.append(msg.payload), done.set())
    sub.connect(broker.host, broker.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-pub", protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        for _ in range(50):  # the subscription may not be active yet on the first publish
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
            if done.wait(0.2):
                break
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
    assert got, broker.log()
    return got[0]


def test_fixture_broker_carries_messages_and_restarts_on_the_same_port(mosquitto: MosquittoProcess) -> None:
    assert roundtrip(mosquitto, "vigil/v1/o/a/up/readings", b"x") == b"x"
    port = mosquitto.port
    mosquitto.kill()
    mosquitto.start()
    assert mosquitto.port == port
    assert roundtrip(mosquitto, "vigil/v1/o/a/up/status", b"y") == b"y"


def test_ingest_socket_is_rendered_only_when_asked_and_only_as_a_safe_path(tmp_path: Path) -> None:
    dynsec = DynsecFiles(plugin=tmp_path / "p.so", config_file=tmp_path / "d.json")
    plain = render_mosquitto(MosquittoSpec(data_dir=tmp_path, dynsec=dynsec))
    assert "listener 0 " not in plain
    sock = tmp_path / "run" / "ingest.sock"
    tls = TlsFiles(cafile=tmp_path / "ca.pem", certfile=tmp_path / "s.pem", keyfile=tmp_path / "s.key")
    text = render_mosquitto(MosquittoSpec(data_dir=tmp_path, dynsec=dynsec, tls=tls, ingest_socket=sock))
    lines = text.splitlines()
    at = lines.index(f"listener 0 {sock}")
    assert lines[at + 1] == "protocol mqtt"
    # It comes after the TLS listener's block, so no TLS option applies to it by mistake, and
    # anonymous access stays off for it (a global setting: per_listener_settings false).
    assert max(i for i, line in enumerate(lines) if line.startswith(("certfile", "require_certificate"))) < at
    assert "per_listener_settings false" in lines
    assert "allow_anonymous false" in lines
    longest = Path("/" + "s" * (UNIX_PATH_MAX - 1))
    assert MosquittoSpec(data_dir=tmp_path, dynsec=dynsec, ingest_socket=longest).ingest_socket == longest
    for bad, why in (
        (Path("run/ingest.sock"), "absolute"),
        (Path("/" + "s" * UNIX_PATH_MAX), "limit of a Unix socket path"),
        (tmp_path / "two words.sock", "whitespace"),
        (tmp_path / "x\nallow_anonymous true", "whitespace"),
    ):
        with pytest.raises(BrokerConfigError, match=why):
            MosquittoSpec(data_dir=tmp_path, dynsec=dynsec, ingest_socket=bad)

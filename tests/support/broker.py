"""A real Mosquitto with the project's rendered TLS + password + ACL configuration, for tests.

``SecureBroker`` renders a broker directory with ``broker_config.render`` (a fresh CA and server
certificate in a tmp dir), starts Mosquitto on a free port, and can add or revoke agents the way
``vigil agents`` does (rewrite passwd/acl, SIGHUP). ``client()`` builds a paho MQTT v5 client that
trusts the test CA.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.ca import CertifiedKey, create_ca, issue_server_certificate
from broker_config.mosquitto import MosquittoSpec
from broker_config.passwords import (
    INGEST_USERNAME,
    AgentAccount,
    ServiceAccount,
    hash_password,
    new_password,
)
from broker_config.render import BrokerLayout, full_spec, reload_broker, render_broker, write_access_files
from rpm_core.ids import AgentId, OrgId
from tests.support.mosquitto import MosquittoProcess
from tests.support.net import free_port

SERVER_NAMES = ("localhost", "127.0.0.1")


def tls_context(cafile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass
class SecureBroker:
    workdir: Path
    layout: BrokerLayout
    ca: CertifiedKey
    ingest_password: str
    proc: MosquittoProcess
    agents: dict[str, tuple[AgentAccount, str]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.proc.host

    @property
    def port(self) -> int:
        return self.proc.port

    def services(self) -> list[ServiceAccount]:
        return [ServiceAccount(INGEST_USERNAME, hash_password(self.ingest_password))]

    def add_agent(self, org: str, agent: str) -> str:
        password = new_password()
        self.agents[agent] = (AgentAccount(OrgId(org), AgentId(agent), hash_password(password)), password)
        self.sync()
        return password

    def revoke(self, agent: str) -> None:
        self.agents.pop(agent)
        self.sync()

    def sync(self) -> None:
        write_access_files(self.layout, [a for a, _ in self.agents.values()], self.services())
        if self.proc.proc is not None:
            assert reload_broker(self.layout.pid_file)

    def client(
        self, client_id: str, username: str | None, password: str | None, *, clean_start: bool = True
    ) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(self.layout.ca))
        if username is not None:
            c.username_pw_set(username, password)
        return c

    def stop(self) -> None:
        self.proc.stop()


def start_secure_broker(
    workdir: Path,
    *,
    server_cert: CertifiedKey | None = None,
    ca: CertifiedKey | None = None,
    max_inflight_messages: int = 1000,
) -> SecureBroker:
    now = datetime.now(UTC)
    ca = ca or create_ca(now=now)
    layout = BrokerLayout(workdir)
    ingest_password = new_password()
    base = MosquittoSpec(
        data_dir=layout.data_dir,
        port=free_port(),
        password_file=layout.passwd,
        max_inflight_messages=max_inflight_messages,
        autosave_interval=5,
    )
    render_broker(
        layout,
        spec=base,
        ca=ca,
        server_names=SERVER_NAMES,
        agents=[],
        services=[ServiceAccount(INGEST_USERNAME, hash_password(ingest_password))],
        now=now,
        server_cert=server_cert or issue_server_certificate(ca, SERVER_NAMES, now=now),
    )
    proc = MosquittoProcess(full_spec(layout, base), workdir)
    broker = SecureBroker(workdir, layout, ca, ingest_password, proc)
    proc.start()
    return broker


def connect_result(client: mqtt.Client, host: str, port: int, timeout: float = 10, *, keep: bool = False) -> object:
    """Connect and wait for CONNACK; return the reason code, or the exception the attempt raised.

    With ``keep`` a successful connection stays up with its network loop running (paho's
    ``loop_start`` must not be called twice: it would leak its wake-up socket pair).
    """
    got: list[object] = []
    done = threading.Event()

    def on_connect(_c, _u, _flags, reason, _props) -> None:
        got.append(reason)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except (ssl.SSLError, OSError) as exc:
        return exc
    client.loop_start()
    try:
        if not done.wait(timeout):
            return TimeoutError("no CONNACK")
        return got[0]
    finally:
        if not (keep and got and not getattr(got[0], "is_failure", True)):
            client.disconnect()
            client.loop_stop()

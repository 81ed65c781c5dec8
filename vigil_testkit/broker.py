"""A real Mosquitto with the project's rendered TLS + dynamic security configuration, for tests.

``SecureBroker`` renders a broker directory with ``broker_config.render`` (a fresh CA and server
certificate in a tmp dir), starts Mosquitto on a free port, and adds or revokes agents the way
``vigil agents`` does: through the dynamic security control API as ``vigil-admin`` while the broker
runs (deleting an account disconnects its clients at once), in the plugin's JSON file while it is
stopped. Its accounts: the ingest workers (``vigil-ingest-1``, and any client id a test asks for
with :meth:`SecureBroker.add_ingest`, all with ``ingest_password``), ``vigil-admin`` and the agents.
``client()`` builds a paho MQTT v5 client that trusts the test CA; ``socket_client()`` one for
ingest's own listener, the Unix socket ``ingest_socket`` (rendered when its path fits a socket
address, as it does under pytest's and tempfile's directories).
"""

from __future__ import annotations

import getpass
import os
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.accounts import (
    ADMIN_USERNAME,
    INGEST_USERNAME,
    AclType,
    BrokerAccount,
    Grant,
    admin_account,
    agent_account,
    ingest_account,
)
from broker_config.ca import CertifiedKey, create_ca, issue_server_certificate
from broker_config.control import DynsecControl
from broker_config.dynsec import plan_reconcile
from broker_config.mosquitto import UNIX_PATH_MAX, MosquittoSpec
from broker_config.passwords import hash_password, new_password
from broker_config.render import BrokerLayout, dynsec_files, full_spec, render_broker, write_dynsec
from rpm_core.topics import PREFIX
from vigil_testkit.mosquitto import MosquittoProcess
from vigil_testkit.net import free_port

SERVER_NAMES = ("localhost", "127.0.0.1")
CONTROL_HOST = "localhost"  # a name in the test certificate


def tls_context(cafile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def observer_account(username: str, password: str) -> BrokerAccount:
    """A test-only account that reads every agent's uplink outside ingest's group (never rendered in production)."""
    up = f"{PREFIX}/+/+/up/#"
    grants = (Grant(AclType.SUBSCRIBE_PATTERN, up), Grant(AclType.RECEIVE, up))
    return BrokerAccount(username, hash_password(password), grants)


def add_observer(*, port: int, ca_file: Path, admin_password: str, username: str = "test-observer") -> str:
    """Create an observer account on a running broker through its control API; its password."""
    password = new_password()
    with DynsecControl(host=CONTROL_HOST, port=port, ca_file=ca_file, password=admin_password) as ctl:
        ctl.create(observer_account(username, password), password)
    return password


@dataclass
class SecureBroker:
    workdir: Path
    layout: BrokerLayout
    ca: CertifiedKey
    ingest_password: str
    admin_password: str
    proc: MosquittoProcess
    agents: dict[str, tuple[BrokerAccount, str]] = field(default_factory=dict)
    services: dict[str, tuple[BrokerAccount, str]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.proc.host

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def ingest_socket(self) -> Path:
        """Ingest's own listener (a Unix socket); AssertionError when this broker has none."""
        path = self.proc.spec.ingest_socket
        assert path is not None, "no ingest socket: the broker directory's path is too long for one"
        return path

    def accounts(self) -> list[BrokerAccount]:
        return [a for a, _ in self.services.values()] + [a for a, _ in self.agents.values()]

    def control(self) -> DynsecControl:
        return DynsecControl(host=CONTROL_HOST, port=self.port, ca_file=self.layout.ca, password=self.admin_password)

    def _add(self, account: BrokerAccount, password: str) -> None:
        if self.proc.running:
            with self.control() as ctl:
                ctl.create(account, password)
        else:
            write_dynsec(self.layout, [*self.accounts(), account])

    def add_agent(self, org: str, agent: str) -> str:
        password = new_password()
        account = agent_account(org, agent, hash_password(password))
        self._add(account, password)
        self.agents[agent] = (account, password)
        return password

    def add_ingest(self, client_id: str) -> str:
        """An ingest worker account bound to ``client_id`` (password ``ingest_password``); idempotent."""
        if client_id not in self.services:
            account = ingest_account(client_id, hash_password(self.ingest_password))
            self._add(account, self.ingest_password)
            self.services[client_id] = (account, self.ingest_password)
        return self.ingest_password

    def add_account(self, account: BrokerAccount, password: str) -> None:
        """Any other account (e.g. :func:`observer_account`)."""
        self._add(account, password)
        self.services[account.username] = (account, password)

    def revoke(self, agent: str) -> None:
        self.agents.pop(agent)
        if self.proc.running:
            with self.control() as ctl:
                ctl.delete(agent)
        else:
            self.sync()

    def sync(self) -> None:
        """Make the broker hold exactly this object's accounts (reconcile if it runs, else rewrite its file)."""
        if not self.proc.running:
            write_dynsec(self.layout, self.accounts())
            return
        passwords = {name: pw for name, (_, pw) in [*self.services.items(), *self.agents.items()]}
        with self.control() as ctl:
            ctl.apply(plan_reconcile(self.accounts(), ctl.state(), passwords))

    def client(
        self, client_id: str, username: str | None, password: str | None, *, clean_start: bool = True
    ) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(self.layout.ca))
        if username is not None:
            c.username_pw_set(username, password)
        return c

    def socket_client(self, client_id: str, username: str | None, password: str | None) -> mqtt.Client:
        """A client for :attr:`ingest_socket` (connect it with ``connect_result(c, str(path), 1)``)."""
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, transport="unix")
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
    ingest_password, admin_password = new_password(), new_password()
    services = {
        INGEST_USERNAME: (ingest_account(INGEST_USERNAME, hash_password(ingest_password)), ingest_password),
        ADMIN_USERNAME: (admin_account(hash_password(admin_password)), admin_password),
    }
    base = MosquittoSpec(
        data_dir=layout.data_dir,
        port=free_port(),
        max_inflight_messages=max_inflight_messages,
        autosave_interval=5,
        user=getpass.getuser(),
        dynsec=dynsec_files(layout),
        ingest_socket=layout.ingest_socket if len(os.fsencode(layout.ingest_socket)) <= UNIX_PATH_MAX else None,
    )
    render_broker(
        layout,
        spec=base,
        ca=ca,
        server_names=SERVER_NAMES,
        accounts=[a for a, _ in services.values()],
        now=now,
        server_cert=server_cert or issue_server_certificate(ca, SERVER_NAMES, now=now),
    )
    proc = MosquittoProcess(full_spec(layout, base), workdir)
    broker = SecureBroker(workdir, layout, ca, ingest_password, admin_password, proc, services=services)
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

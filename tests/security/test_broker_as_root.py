"""Issue 10, item 4: the documented production start, as root with the drop to ``mosquitto``.

Mosquitto started as root drops to its ``user`` right after reading its configuration. The tree
``vigil broker render`` wrote as root used to be unusable by that user: no pid file (it did not
start), every autosave failing with "Permission denied" (no ``mosquitto.db``, so a restart lost
every queued message) and "Unable to open config file" on each SIGHUP.

Here the real CLI renders as root with the default ``broker_user=mosquitto`` into a directory that
user can reach (not the 0700 pytest tmp dir, which render refuses with a clear message), Mosquitto
runs the rendered file as root and drops privileges, QoS 1 messages queued for a persistent
session survive a clean restart and a ``kill -9`` after an autosave, a SIGHUP rereads the
configuration, and provisioning through the control API works against the broker running as
``mosquitto`` (which must rewrite its accounts file).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker_config.accounts import INGEST_USERNAME
from broker_config.render import persisted_state
from rpm_core.topics import ingest_subscription
from tests.support.platform import HOST, RenderedPlatform, reachable_dir, start_platform, wait_for
from vigil_testkit.broker import connect_result, tls_context

BROKER_USER = "mosquitto"
BATCH = 25

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starts Mosquitto as root (CI runs as root)")


def owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


@pytest.fixture
def reachable() -> Iterator[Path]:
    with reachable_dir() as path:
        yield path


@pytest.fixture
def platform(db: str, tmp_path: Path, reachable: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(
        db,
        tmp_path,
        broker_dir=reachable / "broker",
        broker_user=BROKER_USER,
        settings={
            "VIGIL_BROKER_AUTOSAVE_INTERVAL_S": "1",
            "VIGIL_BROKER_LOG_FILE": str(reachable / "log" / "mosquitto.log"),
        },
    )
    try:
        yield p
    finally:
        p.stop()


def test_render_refuses_a_directory_the_broker_user_cannot_enter(db: str, tmp_path: Path) -> None:
    assert stat.S_IMODE(Path(tempfile.gettempdir(), f"pytest-of-{pwd.getpwuid(0).pw_name}").stat().st_mode) == 0o700
    platform = start_platform(db, tmp_path, broker_user=BROKER_USER, render=False)
    result = platform.vigil("broker", "render", ok=False)
    assert result.exit_code == 1
    assert "the broker user cannot enter this directory" in result.output
    assert f"pytest-of-{pwd.getpwuid(0).pw_name}" in result.output
    assert "(the broker runs as 'mosquitto')" in result.output


class Session:
    """A persistent MQTT 5 session as the first ingest worker (clean_start=0, 1 h expiry)."""

    def __init__(self, platform: RenderedPlatform) -> None:
        self.platform = platform
        self.received: list[bytes] = []
        self.present: list[bool] = []
        self.subscribed = threading.Event()

    def connect(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=INGEST_USERNAME, protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(self.platform.layout.ca))
        c.username_pw_set(INGEST_USERNAME, self.platform.ingest_password())

        def on_connect(client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: object, _p: object) -> None:
            self.present.append(bool(flags.session_present))
            client.subscribe(ingest_subscription(), qos=1)

        c.on_connect = on_connect
        c.on_subscribe = lambda *_a: self.subscribed.set()
        c.on_message = lambda _c, _u, msg: self.received.append(bytes(msg.payload))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.subscribed.clear()
        c.connect(HOST, self.platform.port, clean_start=False, properties=props)
        c.loop_start()
        assert self.subscribed.wait(10), "not subscribed"
        return c


def close(c: mqtt.Client) -> None:
    """Disconnect after everything queued went out: the DISCONNECT follows the PUBACKs of what was
    received, so nothing is redelivered to the next connection of the session."""
    gone = threading.Event()
    c.on_disconnect = lambda *_a: gone.set()
    c.disconnect()
    assert gone.wait(10), "no clean disconnect"
    c.loop_stop()


def queue(platform: RenderedPlatform, agent: object, tag: str) -> int:
    """Publish BATCH QoS 1 messages (each acknowledged by the broker); the time of the last PUBACK."""
    for i in range(BATCH):
        assert agent.publish_raw("vigil/v1/clinic-1/agt-1/up/readings", f"{tag}-{i}".encode()) == 0  # type: ignore[attr-defined]
    return time.time_ns()


def uids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return [int(x) for x in next(line for line in status if line.startswith("Uid:")).split()[1:]]


@pytest.mark.slow
def test_as_root_with_the_user_drop_queued_messages_survive_restarts(platform: RenderedPlatform) -> None:
    layout, broker = platform.layout, platform.broker
    mosquitto = pwd.getpwnam(BROKER_USER)
    assert broker.proc is not None
    # It runs, as mosquitto (real, effective, saved and file-system uid), and wrote its pid file.
    assert uids(broker.proc.pid) == [mosquitto.pw_uid] * 4
    assert int(layout.pid_file.read_text()) == broker.proc.pid
    assert owner(layout.run_dir)[0] == owner(layout.pid_file)[0] == BROKER_USER
    assert owner(layout.data_dir) == (BROKER_USER, "mosquitto", 0o700)
    assert owner(layout.dynsec_dir) == (BROKER_USER, "mosquitto", 0o700)
    assert owner(layout.conf) == ("root", "mosquitto", 0o640)
    assert owner(layout.server_key) == ("root", "mosquitto", 0o640)

    # Provisioning while it runs as mosquitto: the account goes through the control API and the
    # broker itself rewrites its accounts file in the directory it owns.
    agent = platform.sim_agent(platform.create_agent("agt-1"))
    saved = persisted_state(layout)
    assert saved is not None
    assert "agt-1" in saved.clients
    assert owner(layout.dynsec_file)[0] == BROKER_USER
    agent.connect()

    # 1. Queued for an offline persistent session; clean stop; start; all there.
    session = Session(platform)
    close(session.connect())
    queue(platform, agent, "clean")
    broker.stop()
    broker.start()
    wait_for(agent.client.is_connected, 20, "the agent reconnected")  # paho's own reconnect
    c = session.connect()
    wait_for(lambda: len(session.received) >= BATCH, 20, "messages queued before the clean restart")
    close(c)
    assert session.present[-1] is True
    assert sorted(session.received) == sorted(f"clean-{i}".encode() for i in range(BATCH))

    # 2. Queued again; an autosave writes them (mosquitto.db, by the mosquitto user); kill -9; start.
    session.received.clear()
    last_ack = queue(platform, agent, "killed")
    db_file = layout.data_dir / "mosquitto.db"
    wait_for(lambda: db_file.exists() and db_file.stat().st_mtime_ns > last_ack, 20, "an autosave after the queueing")
    assert owner(db_file)[0] == BROKER_USER
    broker.kill()
    broker.start()
    assert broker.proc is not None
    assert uids(broker.proc.pid) == [mosquitto.pw_uid] * 4
    c = session.connect()
    wait_for(lambda: len(session.received) >= BATCH, 20, "messages queued before the kill -9")
    assert session.present[-1] is True
    assert sorted(session.received) == sorted(f"killed-{i}".encode() for i in range(BATCH))

    # 3. SIGHUP: the configuration is reread and the log reopened, as mosquitto. A CONNACK after the
    # signal shows the broker went through its main loop, where the reload happens, at least once
    # since; the connection is logged in the reopened file.
    log_file = Path(platform.env["VIGIL_BROKER_LOG_FILE"])
    before = log_file.stat().st_size
    os.kill(broker.proc.pid, signal.SIGHUP)
    close(c)
    close(session.connect())
    log = log_file.read_text()
    assert f"as {INGEST_USERNAME}" in log[before:]
    for failure in ("Unable to open", "Permission denied", "Error:", "Error saving", "Error updating"):
        assert failure not in log, log[-2000:]


def connect_as(user: str, path: Path) -> str:
    """Open a connection to the Unix socket ``path`` as the Unix user ``user`` (in a forked child that
    drops to it: this Python may live where that user cannot run it): "ok" or the errno's name."""
    entry = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 0
        try:
            os.setgroups(os.getgrouplist(user, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
        except OSError as exc:
            code = exc.errno or 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "ok" if code == 0 else errno.errorcode.get(code, str(code))


def test_ingest_socket_is_the_broker_users_and_its_groups_only(platform: RenderedPlatform) -> None:
    """Ingest's own listener as rendered by default and created by Mosquitto after dropping to its user:
    owned by that user and its group, mode 0770; another local user (``nobody``: any account on the
    broker's host, an agent's credentials in hand or not) cannot even open a connection. The broker's
    own user (and root, which runs ingest here) can, and still needs an account."""
    path = platform.layout.ingest_socket
    assert f"listener 0 {path}" in platform.layout.conf.read_text()
    assert owner(path) == (BROKER_USER, grp.getgrgid(pwd.getpwnam(BROKER_USER).pw_gid).gr_name, 0o770)
    assert connect_as("nobody", path) == "EACCES"
    assert connect_as(BROKER_USER, path) == "ok"
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=INGEST_USERNAME, protocol=mqtt.MQTTv5, transport="unix")
    c.username_pw_set(INGEST_USERNAME, platform.ingest_password())
    assert getattr(connect_result(c, str(path), 1), "value", None) == 0
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5, transport="unix")
    assert getattr(connect_result(anonymous, str(path), 1), "is_failure", False)

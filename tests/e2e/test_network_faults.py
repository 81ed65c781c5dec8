"""Catalogue 8 and 9: the real edge agent's uplink over a real, impaired IP path to the real broker.

Mosquitto runs the configuration ``vigil broker render`` wrote, inside a network namespace
(:mod:`tests.support.netns`). The agent (in this process, a heart-rate strap on the emulated radio)
reaches it only through the impaired path: a userspace router between two TUN devices that loses,
delays, reorders and duplicates packets, or drops every one of them without a RST or FIN (a
half-open connection). ``vigil ingest`` reaches the broker over a clean veth pair. Everything above
IP is production's: TCP, TLS, MQTT 5, the outbox, receipts, the idempotent store.

- 8: the path goes silent mid-stream. The agent notices within 1.5 x its keepalive (as the broker
  does, which publishes its will), keeps every reading measured meanwhile in its outbox in sequence
  order, and is connected again within 1.5 x keepalive of the path coming back; every reading is
  stored once, in order.
- 9: loss, delay with jitter, reordering and duplicated packets, with a receipt timeout short enough
  that the agent sends unreceipted readings again: nothing lost, and the duplicates that reach
  ingest (counted by ``vigil_ingest_duplicates_total``) are absorbed.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import typer
from typer.testing import CliRunner

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.config_file import read_config, write_config
from edge_agent.emulation import EmulatedPeripheral, EmulatedRadio, VirtualAir, heart_rate_strap
from edge_agent.outbox import inspect_outbox
from edge_agent.outbox.store import OutboxStats
from edge_agent.settings import PairedDevice
from ingest.settings import IngestSettings
from rpm_core.enrollment import EnrollmentBundle
from tests.ingest.conftest import IngestProcess
from tests.support.netns import Impairment, NetnsLink, netns_unavailable
from vigil_cli.agents import app as agents_app
from vigil_cli.broker import app as broker_app
from vigil_testkit import procs
from vigil_testkit.agent_harness import Enrolled
from vigil_testkit.mosquitto import mosquitto_binary
from vigil_testkit.net import free_port, wait_for_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or ""),
]

ORG, PATIENT, AGENT, HR = "clinic-1", "p1", "agt-net-1", "E0:00:00:00:30:01"
KEEPALIVE_S = 5  # the smallest the agent accepts: keeps the half-open test short
TUNING = {
    "batch_max_age_s": 0.1,
    "registration_retry_s": 1.0,
    "mqtt_backoff_cap_s": 1.0,
    "mqtt_keepalive_s": KEEPALIVE_S,
}


def cli(app: typer.Typer, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@dataclass
class Platform:
    db: str
    key_dir: Path
    port: int
    bundle: Path
    link: NetnsLink
    broker_log: Path


@pytest.fixture
def link() -> Iterator[NetnsLink]:
    made = NetnsLink.open(seed=14)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def platform(db: str, tmp_path: Path, link: NetnsLink) -> Iterator[Platform]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is not installed: run .ci/run or apt-get install mosquitto")
    port, key_dir, broker_dir = free_port(), tmp_path / "keys", tmp_path / "broker"
    names = f'["localhost", "{link.clean_far_ip}"]'
    env = {
        "VIGIL_DATABASE_URL": db,
        "VIGIL_KEY_DIR": str(key_dir),
        "VIGIL_BROKER_DIR": str(broker_dir),
        "VIGIL_BROKER_HOST": link.clean_far_ip,  # provisioning and ingest take the clean path
        "VIGIL_BROKER_BIND": "0.0.0.0",  # noqa: S104 - inside the test's own namespace
        "VIGIL_BROKER_SERVER_NAMES": names,
        "VIGIL_BROKER_PORT": str(port),
        "VIGIL_BROKER_USER": getpass.getuser(),
    }
    cli(agents_app, env, "keys", "init")
    cli(agents_app, env, "org", "create", ORG, "--name", "Clinic")
    cli(agents_app, env, "patient", "create", PATIENT, "--org", ORG, "--name", "Test Patient")
    cli(broker_app, env, "render")
    broker_log = tmp_path / "mosquitto.log"
    with broker_log.open("ab") as log:
        command = link.command(binary, "-c", str(broker_dir / "mosquitto.conf"))
        broker = procs.popen(command, stdout=log, stderr=log)
    try:
        wait_for_port(link.clean_far_ip, port)
        bundle = tmp_path / "bundle.json"
        cli(agents_app, env, "create", "--org", ORG, "--patient", PATIENT, "--agent", AGENT, "--out", str(bundle))
        yield Platform(db, key_dir, port, bundle, link, broker_log)
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


@pytest.fixture
def ingest(platform: Platform, tmp_path: Path) -> Iterator[IngestProcess]:
    settings = IngestSettings(
        database_url=platform.db,
        key_dir=platform.key_dir,
        mqtt_host=platform.link.clean_far_ip,
        mqtt_port=platform.port,
        metrics_port=free_port(),
        batch_max_wait_ms=20,
    )
    worker = IngestProcess(settings, tmp_path / "ingest.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.kill()


def enroll(platform: Platform, tmp_path: Path, **tuning: Any) -> Enrolled:
    directory, state_dir = tmp_path / "edge", tmp_path / "edge-state"
    cli(
        edge_app, {}, "enroll", "--bundle", str(platform.bundle), "--dir", str(directory),
        "--state-dir", str(state_dir), "--time-zone", "UTC", "--owner", getpass.getuser(),
    )  # fmt: skip
    config = directory / "agent.toml"
    values = {**read_config(config), **TUNING, **tuning, "broker_host": platform.link.far_ip}  # the impaired path
    write_config(config, values, [PairedDevice(address=HR, profile="heart_rate", name="HR")])
    return Enrolled(config, EnrollmentBundle.read(platform.bundle), directory, state_dir)


class LinkLog(logging.Handler):
    """When the agent's MQTT link connected and gave up connections (wall clock, from its own log)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.connected: list[float] = []
        self.lost: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("connected to the broker"):
            self.connected.append(record.created)
        elif "reconnecting in" in message:
            self.lost.append(record.created)


@pytest.fixture
def link_log() -> Iterator[LinkLog]:
    handler, logger = LinkLog(), logging.getLogger("edge_agent.mqtt")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Strap:
    device: EmulatedPeripheral
    radio: Radio
    expected: list[float]  # heart rates in the order the strap measured them

    async def beat(self) -> None:
        bpm = 40 + len(self.expected) % 150
        assert await self.device.notify(0x2A37, bytes([0x06, bpm])) == 1
        self.expected.append(float(bpm))


@pytest_asyncio.fixture
async def strap() -> AsyncIterator[Strap]:
    air = VirtualAir()
    device = heart_rate_strap(air, name="HR", address=HR)
    await device.start()
    central = await EmulatedRadio.open(air)
    try:
        yield Strap(device, Radio(central.scanner_backend, central.client_backend), [])
    finally:
        await central.close()
        await device.stop()


@asynccontextmanager
async def running(enrolled: Enrolled, strap: Strap) -> AsyncIterator[asyncio.Task[None]]:
    agent = await asyncio.to_thread(lambda: Agent(enrolled.settings(), enrolled.identity(), radio=strap.radio))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Any], within: float, what: str, *, agent: asyncio.Task[None]) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if agent.done():
            agent.result()
            raise AssertionError("the agent stopped")
        if value := await asyncio.to_thread(check):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def stored(db: str) -> list[tuple[int, float]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT seq, value FROM readings WHERE agent_id = %s ORDER BY seq, time", (AGENT,))
        return [(int(s), float(v)) for s, v in rows.fetchall()]


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.asyncio
async def test_half_open_uplink_buffers_in_order_and_reconnects_within_1_5_keepalives(
    platform: Platform, ingest: IngestProcess, strap: Strap, link_log: LinkLog, tmp_path: Path
) -> None:
    """Catalogue 8."""
    enrolled = await asyncio.to_thread(enroll, platform, tmp_path)
    outbox_path, bound = enrolled.state_dir / "outbox.db", 1.5 * KEEPALIVE_S

    def outbox() -> OutboxStats:
        return inspect_outbox(outbox_path).stats

    async with running(enrolled, strap) as agent:
        await until(lambda: strap.device.is_subscribed(0x2A37), 30, "the strap subscribed", agent=agent)
        for _ in range(20):
            await strap.beat()
        await until(lambda: outbox().last_receipt == 20, 30, "the first readings receipted", agent=agent)

        # The path goes silent: no packet in either direction, no RST, no FIN.
        sessions = len(link_log.connected)
        cut_at = time.time()
        platform.link.blackhole()
        while not link_log.lost:  # devices keep measuring while the agent still trusts its connection
            await strap.beat()
            await until(lambda: True, 1, "", agent=agent)
            await asyncio.sleep(0.2)
            assert time.time() - cut_at < 4 * KEEPALIVE_S, "the agent never noticed the dead connection"
        noticed_after = link_log.lost[0] - cut_at
        for _ in range(10):  # and after it gave the connection up
            await strap.beat()
        produced = len(strap.expected)
        await until(lambda: outbox().last_allocated == produced, 10, "every reading in the outbox", agent=agent)
        held = await asyncio.to_thread(outbox)
        # In order, none missing: sequence numbers 21..produced, all still held, none receipted.
        assert (held.last_receipt, held.first_seq, held.depth) == (20, 21, produced - 20)
        assert len(link_log.connected) == sessions  # no session while the path is dead
        assert await asyncio.to_thread(stored, platform.db) == list(enumerate(strap.expected[:20], 1))

        # The broker sees the same silence (no FIN or RST reached it either) and drops the agent on its
        # own keepalive clock (1.5 x), publishing its will.
        dropped = lambda: "exceeded timeout" in platform.broker_log.read_text(errors="replace")  # noqa: E731
        await until(dropped, 4 * KEEPALIVE_S, "the broker dropping the silent agent", agent=agent)

        restored_at = time.time()
        platform.link.restore()
        await until(lambda: len(link_log.connected) > sessions, 4 * KEEPALIVE_S, "reconnected", agent=agent)
        reconnected_after = link_log.connected[sessions] - restored_at
        await until(lambda: outbox().last_receipt == produced, 30, "every reading receipted", agent=agent)
        assert (await asyncio.to_thread(outbox)).depth == 0

    assert await asyncio.to_thread(stored, platform.db) == list(enumerate(strap.expected, 1))  # once each, in order
    print(f"catalogue 8: noticed after {noticed_after:.2f} s, reconnected after {reconnected_after:.2f} s")
    assert noticed_after <= bound, f"half-open connection noticed after {noticed_after:.1f} s (bound {bound} s)"
    assert reconnected_after <= bound, f"reconnected {reconnected_after:.1f} s after the path returned"


@pytest.mark.asyncio
async def test_lossy_reordering_link_loses_nothing_and_duplicates_are_absorbed(
    platform: Platform, ingest: IngestProcess, strap: Strap, link_log: LinkLog, tmp_path: Path
) -> None:
    """Catalogue 9."""
    # A receipt timeout this short makes the agent send unreceipted readings again while receipts are late.
    enrolled = await asyncio.to_thread(lambda: enroll(platform, tmp_path, receipt_timeout_s=0.5))

    def outbox() -> OutboxStats:
        return inspect_outbox(enrolled.state_dir / "outbox.db").stats

    impairment = Impairment(loss=0.08, delay_s=0.04, jitter_s=0.08, reorder=0.25, duplicate=0.05)
    async with running(enrolled, strap) as agent:
        await until(lambda: strap.device.is_subscribed(0x2A37), 30, "the strap subscribed", agent=agent)
        platform.link.impair(impairment)
        for _ in range(300):
            await strap.beat()
            await asyncio.sleep(0.02)
        produced = len(strap.expected)
        await until(lambda: outbox().last_receipt == produced, 60, "every reading receipted", agent=agent)
        platform.link.restore()

    stats = platform.link.stats
    assert min(stats.dropped, stats.reordered, stats.duplicated, stats.delayed) > 0, stats  # really impaired
    assert await asyncio.to_thread(stored, platform.db) == list(enumerate(strap.expected, 1))  # once each
    duplicates = await asyncio.to_thread(metric, ingest_metrics_port(ingest), "vigil_ingest_duplicates_total")
    print(f"catalogue 9: {produced} readings, {stats}, {duplicates:.0f} duplicates absorbed")
    assert duplicates > 0  # readings did arrive twice, and the table holds each once


def ingest_metrics_port(worker: IngestProcess) -> int:
    return int(worker.env["VIGIL_METRICS_PORT"])

"""Acceptance of issue 4: emulated devices -> the real edge agent -> the rendered TLS Mosquitto ->
``vigil ingest`` -> PostgreSQL. Every reading the devices produced is stored exactly once, for the
patient the agent is assigned to, and the agent's outbox lets readings go only when ingest's
receipts say they are committed.

Everything is set up the production way: ``vigil agents keys init | org create | patient create``,
``vigil broker render``, Mosquitto started on the rendered configuration, ``vigil agents create``
(which rewrites the broker's access files and reloads it) writes the enrollment bundle, ``vigil
edge enroll --bundle`` generates the agent's keys, and the agent's public keys reach the server in
its first registration, which ingest accepts. The agent runs in this process with emulated devices
on a virtual radio (as in tests/edge_agent/test_agent.py); ingest runs as ``vigil ingest``
subprocesses: stopped once, and killed (-9) once while readings stream in.

A probe subscribed to the agents' uplink with a test-only observer account (created through the
broker's control API; ingest's own accounts may subscribe to nothing but the shared group) opens
every envelope the agent publishes: it shows that readings reached the broker while the outbox
still held them, and gives the exact readings (times and flags) the table must hold.
"""

from __future__ import annotations

import asyncio
import getpass
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import pytest_asyncio
import typer
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from broker_config.mosquitto import MosquittoSpec
from broker_config.render import BrokerLayout
from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.config_file import read_config, write_config
from edge_agent.emulation import (
    EmulatedPeripheral,
    GlucoseMeter,
    VirtualAir,
    blood_pressure_cuff,
    heart_rate_strap,
    pulse_oximeter,
    thermometer,
)
from edge_agent.emulation.demo import glucose_record
from edge_agent.outbox import inspect_outbox
from edge_agent.outbox.store import OutboxStats
from ingest.opener import EnvelopeOpener
from ingest.settings import IngestSettings
from provisioning.broker import service_password
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.keys import AgentPublicKeys
from rpm_core.keystore import load_server_keys
from rpm_core.reading import Reading
from rpm_core.topics import Topic
from tests.ingest.conftest import IngestProcess
from tests.support.home import BP_A, BP_B, CONTINUOUS, SPOT, TEMP_VECTOR, on_the_air, paired_devices
from vigil_cli.agents import app as agents_app
from vigil_cli.broker import app as broker_app
from vigil_testkit.agent_harness import Enrolled
from vigil_testkit.broker import add_observer, connect_result, tls_context
from vigil_testkit.mosquitto import MosquittoProcess, mosquitto_binary
from vigil_testkit.net import free_port

ORG, PATIENT, OTHER_PATIENT, AGENT = "clinic-1", "p1", "p2", "agt-e2e-1"
DEVICES = paired_devices(20, ["heart_rate", "pulse_oximeter", "blood_pressure", "thermometer", "glucose"])
HR, SPO2, BP, TEMP, GLU = (d.address for d in DEVICES)
# Short timers so the run stays well under a minute; the code paths are production's.
TUNING = {
    "batch_max_age_s": 0.2,
    "registration_retry_s": 1.0,
    "racp_poll_interval_s": 1.0,
    "mqtt_backoff_cap_s": 2.0,
    "ble_backoff_cap_s": 1.0,
}
GLUCOSE_BASE = datetime(2026, 2, 28, 20, 0)  # the meter's local clock; the agent's zone is UTC

Key = tuple[str, str, float]  # device, metric, value


def utc(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)


# -- the server side, provisioned with the real commands ------------------------------------------


def cli(app: typer.Typer, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@dataclass
class Platform:
    db: str
    key_dir: Path
    layout: BrokerLayout
    port: int
    bundle: Path


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[Platform]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is not installed: run .ci/run or apt-get install mosquitto")
    port, key_dir, layout = free_port(), tmp_path / "keys", BrokerLayout(tmp_path / "broker")
    env = {
        "VIGIL_DATABASE_URL": db,
        "VIGIL_KEY_DIR": str(key_dir),
        "VIGIL_BROKER_DIR": str(layout.out_dir),
        "VIGIL_BROKER_HOST": "localhost",
        "VIGIL_BROKER_PORT": str(port),
        "VIGIL_BROKER_USER": getpass.getuser(),
    }
    cli(agents_app, env, "keys", "init")
    cli(agents_app, env, "org", "create", ORG, "--name", "Clinic")
    for patient in (PATIENT, OTHER_PATIENT):
        cli(agents_app, env, "patient", "create", patient, "--org", ORG, "--name", "Test Patient")
    cli(broker_app, env, "render")
    spec = MosquittoSpec(data_dir=layout.data_dir, port=port, allow_anonymous=True)  # host and port only
    broker = MosquittoProcess.rendered(spec, layout.conf, tmp_path, ca_file=layout.ca)
    broker.start()  # returns once it answers MQTT through TLS
    try:
        bundle = tmp_path / "bundle.json"
        out = cli(agents_app, env, "create", "--org", ORG, "--patient", PATIENT, "--agent", AGENT, "--out", str(bundle))
        assert "updated through its control API" in out  # the running broker now has the agent's account
        yield Platform(db, key_dir, layout, port, bundle)
    finally:
        broker.stop()


@pytest.fixture
def ingest(platform: Platform, tmp_path: Path) -> Iterator[IngestProcess]:
    """``vigil ingest`` with the key directory provisioning wrote (server keys, CA, broker password)."""
    settings = IngestSettings(
        database_url=platform.db,
        key_dir=platform.key_dir,
        mqtt_host="localhost",
        mqtt_port=platform.port,
        metrics_port=0,
        batch_max_wait_ms=20,
    )
    worker = IngestProcess(settings, tmp_path / "ingest.log")
    try:
        yield worker
    finally:
        worker.kill()


# -- the patient's home: an enrolled agent and emulated devices -----------------------------------


@pytest.fixture
def enrolled(platform: Platform, tmp_path: Path) -> Enrolled:
    directory, state_dir = tmp_path / "edge", tmp_path / "edge-state"
    cli(
        edge_app, {}, "enroll", "--bundle", str(platform.bundle), "--dir", str(directory),
        "--state-dir", str(state_dir), "--time-zone", "UTC", "--owner", getpass.getuser(),
    )  # fmt: skip
    config = directory / "agent.toml"
    write_config(config, {**read_config(config), **TUNING}, DEVICES)
    return Enrolled(config, EnrollmentBundle.read(platform.bundle), directory, state_dir)


@dataclass
class Home:
    devices: dict[str, EmulatedPeripheral]
    meter: GlucoseMeter
    radio: Radio
    expected: list[Key]  # every reading the devices produced, in the order they produced them
    timed: list[tuple[str, str, float, datetime]]  # those whose time the device stamped

    def __getitem__(self, address: str) -> EmulatedPeripheral:
        return self.devices[address]

    def store_glucose(self, n: int) -> None:
        when = GLUCOSE_BASE + timedelta(hours=n)
        self.meter.add_record(n, glucose_record(n, when))
        self.expected.append((GLU, "glucose", 80.0 + n))
        self.timed.append((GLU, "glucose", 80.0 + n, utc(when)))

    async def heartbeat(self, bpm: int) -> None:
        assert await self[HR].notify(0x2A37, bytes([0x06, bpm])) == 1  # contact detected, uint8 bpm
        self.expected.append((HR, "heart_rate", float(bpm)))


@pytest_asyncio.fixture
async def home() -> AsyncIterator[Home]:
    air = VirtualAir()
    meter = GlucoseMeter(air, name="Glucose", address=GLU, record_interval=0.01)
    devices: list[EmulatedPeripheral] = [
        heart_rate_strap(air, name="HR", address=HR),
        pulse_oximeter(air, name="SpO2", address=SPO2),
        blood_pressure_cuff(air, name="BP", address=BP, connectable_window=10.0),
        thermometer(air, name="Temp", address=TEMP),
        meter,
    ]
    async with on_the_air(air, devices) as radio:
        yield Home({d.address: d for d in devices}, meter, radio, [], [])


@asynccontextmanager
async def running(enrolled: Enrolled, home: Home) -> AsyncIterator[asyncio.Task[None]]:
    agent = await asyncio.to_thread(lambda: Agent(enrolled.settings(), enrolled.identity(), radio=home.radio))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


# -- observing ------------------------------------------------------------------------------------


class UplinkProbe:
    """Opens every readings envelope the broker passes on; keeps each sequence number's reading."""

    def __init__(self, platform: Platform, agent: AgentPublicKeys) -> None:
        self.port = platform.port
        self.opener = EnvelopeOpener(load_server_keys(platform.key_dir).by_kid)  # as ingest opens
        self.agent = agent
        self.readings: dict[int, Reading] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        admin = service_password(platform.key_dir, "vigil-admin")
        password = add_observer(port=platform.port, ca_file=platform.layout.ca, admin_password=admin)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-observer", protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(platform.layout.ca))
        c.username_pw_set("test-observer", password)
        c.on_message = self._on_message
        c.on_subscribe = lambda *_a: self._subscribed.set()
        self.client = c

    def start(self) -> UplinkProbe:
        rc = connect_result(self.client, "localhost", self.port, keep=True)
        assert getattr(rc, "value", None) == 0, rc
        self.client.subscribe("vigil/v1/+/+/up/readings", qos=1)
        assert self._subscribed.wait(10), "probe not subscribed"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = Topic.parse(msg.topic)
            batch = self.opener.open_batch(bytes(msg.payload), topic=topic, agent=self.agent)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            for r in batch.readings:
                if self.readings.setdefault(r.seq, r) != r:
                    self.errors.append(f"sequence number {r.seq} published with different content")

    def published_through(self) -> int:
        with self.lock:
            n = 0
            while n + 1 in self.readings:
                n += 1
            return n


@pytest.fixture
def probe(platform: Platform, enrolled: Enrolled) -> Iterator[UplinkProbe]:
    p = UplinkProbe(platform, enrolled.identity().keys.public()).start()
    try:
        yield p
    finally:
        p.stop()


def stored(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT seq, device_id, metric, value, time, flags, device_time, patient_id, org_id FROM readings "
            "WHERE agent_id = %s ORDER BY seq, time",
            (AGENT,),
        ).fetchall()


def scalar(db: str, query: str, *args: object) -> Any:
    with psycopg.connect(db) as conn:
        row = conn.execute(query, args).fetchone()
        return None if row is None else row[0]


async def until(
    check: Callable[[], Any], within: float, what: str, *, agent: asyncio.Task[None], io: bool = True
) -> Any:
    """Poll ``check`` until it is truthy; fail at the deadline or when the agent has stopped.

    With ``io`` the check blocks (database, outbox file, log) and runs in a thread; without, it reads
    state of this event loop (the emulated devices) and runs here.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if agent.done():
            agent.result()  # raises what ended the agent
            raise AssertionError("the agent stopped")
        if value := (await asyncio.to_thread(check) if io else check()):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def stream_heartbeats(home: Home, stop: asyncio.Event) -> None:
    """A heart-rate strap notifying every 20 ms until told to stop (bounded)."""
    for i in range(3000):
        if stop.is_set():
            return
        await home.heartbeat(40 + i % 150)
        await asyncio.sleep(0.02)


# -- the test -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_every_reading_stored_once_and_outbox_empties_only_after_receipts(
    platform: Platform, enrolled: Enrolled, ingest: IngestProcess, home: Home, probe: UplinkProbe
) -> None:
    db, outbox_path = platform.db, enrolled.state_dir / "outbox.db"

    def outbox() -> OutboxStats:  # what `vigil edge status` reads
        return inspect_outbox(outbox_path).stats

    def connects() -> int:
        return ingest.log().count("connected to the broker")

    for n in (1, 2, 3):  # stored in the meter's memory before the agent ever connects
        home.store_glucose(n)
    await asyncio.to_thread(ingest.start)
    async with running(enrolled, home) as agent:
        # 1. Ingest runs: the agent's registration activates it, the meter's records are receipted.
        await until(lambda: connects() == 1, 30, "ingest connected", agent=agent)
        await until(lambda: outbox().last_receipt == 3, 30, "the stored glucose records receipted", agent=agent)
        assert await asyncio.to_thread(scalar, db, "SELECT status FROM agents WHERE agent_id = %s", AGENT) == "active"
        assert (await asyncio.to_thread(outbox)).depth == 0

        # 2. Ingest stopped: devices keep measuring and the agent keeps publishing (the broker queues
        # for ingest's session), but with no receipt the outbox keeps every reading.
        assert await asyncio.to_thread(ingest.terminate) == 0, ingest.log()[-3000:]
        subscriptions = ((HR, 0x2A37), (SPO2, 0x2A5E), (SPO2, 0x2A5F), (TEMP, 0x2A1C))
        await until(
            lambda: all(home[a].is_subscribed(c) for a, c in subscriptions), 20, "subscriptions", agent=agent, io=False
        )
        for bpm in range(60, 70):
            await home.heartbeat(bpm)
        assert await home[SPO2].indicate(0x2A5E, SPOT) == 1
        home.expected += [(SPO2, "spo2", 94.0), (SPO2, "heart_rate", 147.0)]
        home.timed += [(SPO2, m, v, datetime(2024, 11, 29, 23, 8, 57, tzinfo=UTC)) for _, m, v in home.expected[-2:]]
        assert await home[SPO2].notify(0x2A5F, CONTINUOUS) == 1
        home.expected += [(SPO2, "spo2", 95.0), (SPO2, "heart_rate", 90.0)]
        assert await home[TEMP].indicate(0x2A1C, TEMP_VECTOR) == 1
        home.expected.append((TEMP, "body_temperature", 37.6))
        home.timed.append((TEMP, "body_temperature", 37.6, datetime(2012, 12, 5, 11, 50, 27, tzinfo=UTC)))
        await home[BP].take_measurement(0x2A35, BP_A)
        home.expected += [(BP, "bp_systolic", 138.0), (BP, "bp_diastolic", 88.0), (BP, "bp_mean", 120.0)]
        home.expected.append((BP, "heart_rate", 60.0))
        home.store_glucose(4)
        home.store_glucose(5)  # taken at the next RACP poll
        produced = len(home.expected)
        assert produced == 24
        await until(lambda: probe.published_through() >= produced, 30, "every reading published", agent=agent)
        held = await asyncio.to_thread(outbox)
        assert (held.last_allocated, held.first_seq, held.depth, held.last_receipt) == (produced, 4, produced - 3, 3)
        assert await asyncio.to_thread(scalar, db, "SELECT count(*) FROM readings") == 3

        # 3. Ingest back while a strap streams; kill -9 it mid-stream and start it again.
        await asyncio.to_thread(ingest.start)
        stop = asyncio.Event()
        streamer = asyncio.create_task(stream_heartbeats(home, stop))
        try:
            await home[BP].take_measurement(0x2A35, BP_B)
            home.expected += [(BP, "bp_systolic", 141.762), (BP, "bp_diastolic", 82.51), (BP, "bp_mean", 119.26)]
            home.expected.append((BP, "heart_rate", 60.0))
            home.store_glucose(6)
            await until(
                lambda: scalar(db, "SELECT count(*) FROM readings WHERE device_id = %s AND seq > %s", HR, produced),
                30, "streamed readings stored", agent=agent,
            )  # fmt: skip
            before = connects()
            await asyncio.to_thread(ingest.kill)
            assert not streamer.done(), streamer
            killed_at = len(home.expected)
            await asyncio.to_thread(ingest.start)
            await until(lambda: connects() > before, 30, "ingest restarted", agent=agent)
            await until(lambda: len(home.expected) >= killed_at + 50, 30, "more streaming", agent=agent, io=False)
        finally:
            stop.set()
            await streamer
        await until(lambda: not home[BP].stored_measurements, 30, "the cuff's measurement taken", agent=agent, io=False)
        total = len(home.expected)

        def drained() -> bool:
            # Sampled while the outbox drains: it lets go of exactly what was receipted, and
            # everything receipted is in the table.
            s = outbox()
            assert s.first_seq in (None, s.last_receipt + 1)
            committed = scalar(db, "SELECT count(DISTINCT seq) FROM readings WHERE agent_id = %s AND seq <= %s",
                               AGENT, s.last_receipt)  # fmt: skip
            assert committed == s.last_receipt
            return s.last_allocated == total and s.depth == 0 and s.last_receipt == total

        await until(drained, 60, f"all {total} readings receipted", agent=agent)
        final = await asyncio.to_thread(outbox)
        assert final.gaps == ()

    rows = await asyncio.to_thread(stored, db)
    assert [r[0] for r in rows] == list(range(1, total + 1))  # each sequence number once, none missing
    assert {(r[7], r[8]) for r in rows} == {(PATIENT, ORG)}
    assert Counter((r[1], r[2], r[3]) for r in rows) == Counter(home.expected)  # what the devices produced
    assert not Counter(home.timed) - Counter((r[1], r[2], r[3], r[4]) for r in rows)  # at the devices' times
    with probe.lock:
        wire = dict(probe.readings)
    assert probe.errors == []
    assert [
        (r[0], r[1], r[2], r[3], r[4], sorted(r[5]), r[6]) for r in rows
    ] == [
        (s, w.device_id, w.metric, w.value, w.measured_at, sorted(w.flags), w.device_time)
        for s, w in sorted(wire.items())
    ]  # fmt: skip
    receipted = await asyncio.to_thread(scalar, db, "SELECT through FROM agent_receipts WHERE agent_id = %s", AGENT)
    assert receipted == total
    assert await asyncio.to_thread(scalar, db, "SELECT count(*) FROM dead_letters") == 0
    log = ingest.log()
    assert (log.count("session present: False"), log.count("session present: True")) == (1, 2), log[-3000:]
    assert await asyncio.to_thread(ingest.terminate) == 0, log[-3000:]

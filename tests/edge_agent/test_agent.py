"""Acceptance: six emulated devices -> the agent through bleak -> the project's TLS Mosquitto -> a server
stand-in that opens every envelope, finds every reading exactly once and in sequence, and receipts.

Also: the broker is down for a while as devices keep measuring, and everything arrives afterwards,
in order. The outage lasts a minute, as the acceptance asks (``VIGIL_TEST_OUTAGE_S`` shortens it
while iterating locally; the code path is the same).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.emulation import (
    EmulatedPeripheral,
    GlucoseMeter,
    VirtualAir,
    blood_pressure_cuff,
    heart_rate_strap,
    pulse_oximeter,
    thermometer,
    weight_scale,
)
from edge_agent.emulation.demo import glucose_record
from rpm_core.keys import ServerKey
from tests.support.home import (
    BP_A,
    BP_B,
    CONTINUOUS,
    GLUCOSE_VECTOR,
    HR_PLAIN,
    HR_VECTOR,
    SCALE_KG,
    SCALE_LB,
    SPOT,
    TEMP_VECTOR,
    on_the_air,
    paired_devices,
)  # fmt: skip
from vigil_testkit.agent_harness import Enrolled, ReceiptServer, enroll_agent, wait_async
from vigil_testkit.broker import SecureBroker

DEVICES = paired_devices(
    10, ["heart_rate", "pulse_oximeter", "blood_pressure", "weight_scale", "thermometer", "glucose"]
)
HR, SPO2, BP, SCALE, TEMP, GLU = (d.address for d in DEVICES)
BARRIER = bytes.fromhex("0663")  # 99 bpm, contact
OUTAGE_S = float(os.environ.get("VIGIL_TEST_OUTAGE_S", "60"))


@pytest.fixture
def enrolled(tmp_path: Path, broker: SecureBroker, server_key: ServerKey) -> Enrolled:
    return enroll_agent(
        tmp_path,
        broker,
        server_key,
        devices=DEVICES,
        batch_max_age_s=0.2,
        mqtt_backoff_cap_s=2.0,
        status_interval_s=5.0,
    )


@pytest.fixture
def receipts(broker: SecureBroker, server_key: ServerKey, enrolled: Enrolled) -> Iterator[ReceiptServer]:
    token = enrolled.bundle.enrollment_token.get_secret_value()
    rs = ReceiptServer(broker, server_key, {enrolled.bundle.agent_id: token}).start()
    try:
        yield rs
    finally:
        rs.stop()


@dataclass
class Home:
    devices: dict[str, EmulatedPeripheral]
    radio: Radio

    def __getitem__(self, address: str) -> EmulatedPeripheral:
        return self.devices[address]


@pytest_asyncio.fixture
async def home() -> AsyncIterator[Home]:
    air = VirtualAir()
    meter = GlucoseMeter(air, name="Glucose", address=GLU, record_interval=0.01)
    meter.add_record(1, GLUCOSE_VECTOR)
    base = datetime(2026, 2, 28, 20, 0)
    meter.add_record(2, glucose_record(2, base))
    meter.add_record(3, glucose_record(3, base + timedelta(hours=1)))
    devices: list[EmulatedPeripheral] = [
        heart_rate_strap(air, name="HR", address=HR, battery_level=81),
        pulse_oximeter(air, name="SpO2", address=SPO2),
        blood_pressure_cuff(air, name="BP", address=BP, connectable_window=3.0),
        weight_scale(air, name="Scale", address=SCALE, connectable_window=3.0),
        thermometer(air, name="Temp", address=TEMP, clock_offset=timedelta(hours=-2)),
        meter,
    ]
    async with on_the_air(air, devices) as radio:
        yield Home({d.address: d for d in devices}, radio)


@pytest_asyncio.fixture
async def agent(enrolled: Enrolled, home: Home, receipts: ReceiptServer) -> AsyncIterator[Agent]:
    running = await asyncio.to_thread(lambda: Agent(enrolled.settings(), enrolled.identity(), radio=home.radio))
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def subscribed(home: Home, *pairs: tuple[str, int]) -> None:
    await wait_async(lambda: all(home[a].is_subscribed(c) for a, c in pairs), 20, "subscriptions")


def delivered(receipts: ReceiptServer, agent: Agent, count: int) -> bool:
    uplink = agent.uplink
    return len(receipts.readings("agt-edge-1")) >= count and uplink is not None and uplink.receipted_through >= count


@pytest.mark.asyncio
async def test_six_devices_through_the_agent_to_the_server(agent: Agent, home: Home, receipts: ReceiptServer) -> None:
    await subscribed(home, (HR, 0x2A37), (SPO2, 0x2A5E), (SPO2, 0x2A5F), (TEMP, 0x2A1C))
    await home[HR].notify(0x2A37, HR_VECTOR)
    await home[HR].notify(0x2A37, HR_PLAIN)
    await home[SPO2].indicate(0x2A5E, SPOT)
    await home[SPO2].notify(0x2A5F, CONTINUOUS)
    await home[TEMP].indicate(0x2A1C, TEMP_VECTOR)
    await home[BP].take_measurement(0x2A35, BP_A)
    await home[BP].take_measurement(0x2A35, BP_B)
    await home[SCALE].take_measurement(0x2A9D, SCALE_KG)
    await home[SCALE].take_measurement(0x2A9D, SCALE_LB)
    await wait_async(lambda: delivered(receipts, agent, 19), 30, "19 readings delivered and receipted")
    # The barrier: one more reading, measured after those 19 were receipted, goes the same way
    # (device, outbox, uplink, broker, server). Whatever the agent would have sent more (or twice)
    # of the first 19 is in the server's hands before it, or its sequence number is out of place.
    await home[HR].notify(0x2A37, BARRIER)
    await wait_async(lambda: delivered(receipts, agent, 20), 30, "the barrier reading")

    every = receipts.readings("agt-edge-1")
    record = receipts.record("agt-edge-1")
    assert record is not None
    assert (record.reused, receipts.rejected) == ([], [])
    assert [r.seq for r in every] == list(range(1, 21))  # every reading once, in sequence
    readings, barrier = every[:19], every[19]
    assert (barrier.device_id, barrier.metric, barrier.value) == (HR, "heart_rate", 99.0)
    got = sorted((r.device_id, r.metric, r.value) for r in readings)
    assert got == sorted(
        [
            (HR, "heart_rate", 85.0), (HR, "heart_rate", 78.0),
            (SPO2, "spo2", 94.0), (SPO2, "heart_rate", 147.0), (SPO2, "spo2", 95.0), (SPO2, "heart_rate", 90.0),
            (TEMP, "body_temperature", 37.6),
            (BP, "bp_systolic", 138.0), (BP, "bp_diastolic", 88.0), (BP, "bp_mean", 120.0), (BP, "heart_rate", 60.0),
            (BP, "bp_systolic", 141.762), (BP, "bp_diastolic", 82.51), (BP, "bp_mean", 119.26),
            (BP, "heart_rate", 60.0),
            (SCALE, "body_weight", 70.0), (SCALE, "body_weight", 71.214),
            (GLU, "glucose", 82.0), (GLU, "glucose", 83.0),
        ]
    )  # fmt: skip
    by = {(r.device_id, r.metric, r.value): r for r in readings}
    spot = by[(SPO2, "spo2", 94.0)]
    assert (spot.measured_at, spot.device_time) == (
        datetime(2024, 11, 29, 23, 8, 57, tzinfo=UTC),
        "2024-11-29T23:08:57",
    )
    temp = by[(TEMP, "body_temperature", 37.6)]  # the thermometer's clock is 2 h slow: corrected, flagged
    assert temp.measured_at == datetime(2012, 12, 5, 13, 50, 27, tzinfo=UTC)
    assert {"clock_skew", "site:finger"} <= temp.flags
    assert {"cuff_too_loose", "pulse_rate_below_range"} <= by[(BP, "bp_systolic", 141.762)].flags
    assert by[(GLU, "glucose", 82.0)].measured_at == datetime(2026, 2, 28, 20, 0, tzinfo=UTC)

    state = agent.state
    assert state is not None
    assert state.counters["dropped_implausible"] == 2  # the RR interval and glucose record 1
    uplink = agent.uplink
    assert uplink is not None
    assert uplink.receipted_through == 20

    def settled_status() -> object:  # statuses come on change and every 5 s here
        with receipts.lock:
            return next((s for s in reversed(record.statuses) if s.last_receipt == 20 and s.outbox_depth == 0), None)

    status = await wait_async(settled_status, 15, "a status after delivery")
    assert status.online
    assert status.alarms == {"clock_skew"}
    assert status.last_receipt == 20
    hr_status = next(d for d in status.devices if d.device_id == HR)
    assert (hr_status.battery_pct, hr_status.connected, hr_status.manufacturer) == (81, True, "Vigil Emulated Devices")
    assert next(d for d in status.devices if d.device_id == TEMP).clock_skew_s == -7200.0


@pytest.mark.slow
@pytest.mark.asyncio
async def test_broker_outage_while_devices_keep_measuring(
    agent: Agent, home: Home, receipts: ReceiptServer, broker: SecureBroker
) -> None:
    await subscribed(home, (HR, 0x2A37), (GLU, 0x2A18))
    await wait_async(lambda: delivered(receipts, agent, 2), 20, "the glucose records")
    await asyncio.to_thread(broker.proc.kill)  # kill -9: no goodbye, sessions lost
    measured = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + OUTAGE_S
    while loop.time() < end:  # one HR notification every 0.2 s while the broker is away
        await home[HR].notify(0x2A37, bytes([0x06, 50 + measured % 100]))
        measured += 1
        await asyncio.sleep(0.2)
    outbox_depth = (await agent.uplink._outbox.stats()).depth if agent.uplink else 0
    assert outbox_depth >= measured  # all buffered
    await asyncio.to_thread(broker.proc.start)
    total = 2 + measured
    await wait_async(lambda: delivered(receipts, agent, total), 60, "everything after the outage")
    readings = receipts.readings("agt-edge-1")
    assert [r.seq for r in readings] == list(range(1, total + 1))  # in order, none missing
    assert [r.value for r in readings[2:]] == [float(50 + i % 100) for i in range(measured)]
    record = receipts.record("agt-edge-1")
    assert record is not None
    assert record.reused == []

"""Glucose sessions through bleak against an emulated meter: context pairing, sequence numbers that
wrap at 65535, and RACP procedures that end at once when the meter answers garbage."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.ble import Radio
from edge_agent.demo import glucose_record
from edge_agent.devices.glucose import GlucoseMeasurement
from edge_agent.devices.glucose_context import GlucoseMeasurementContext, Meal
from edge_agent.devices.sfloat import SFloat
from edge_agent.emulation import GlucoseMeter, VirtualAir, glucose_meter
from edge_agent.outbox import AsyncOutbox, Cursor
from edge_agent.settings import PairedDevice
from rpm_core.reading import Reading
from tests.edge_agent.ble.conftest import OPTIONS, Rig
from tests.edge_agent.ble.test_session import running, until
from tests.edge_agent.emulation.conftest import Started

BASE = datetime(2026, 3, 1, 7, 0)


def announcing(sequence: int, minutes: int = 0) -> bytes:
    """Record ``sequence`` (80 + sequence mg/dL) with its ``context_follows`` flag set."""
    plain = GlucoseMeasurement.from_bytes(glucose_record(sequence, BASE + timedelta(minutes=minutes)))
    return bytes(replace(plain, context_follows=True))


async def cursor_is(outbox: AsyncOutbox, address: str, value: int) -> bool:
    return await outbox.cursor(address, "glucose") == value


async def meter_with(air: VirtualAir, started: Started, **kwargs: object) -> GlucoseMeter:
    meter = glucose_meter(air, name="G", with_context=True, **kwargs)
    await started(meter)
    return meter


def summary(readings: list[Reading]) -> list[tuple[str, float, frozenset[str]]]:
    interesting = {"meal_preprandial", "meal_postprandial", "context_missing"}
    return [(r.metric, r.value, frozenset(r.flags & interesting)) for r in readings]


@pytest.mark.asyncio
async def test_contexts_pair_by_sequence_even_a_record_later(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    # context_lag=1: each record's context comes after the next record's measurement.
    meter = await meter_with(air, started, context_lag=1)
    meter.add_record(1, glucose_record(1, BASE + timedelta(minutes=1)))
    meter.add_record(
        2, announcing(2, 2), bytes(GlucoseMeasurementContext(2, meal=Meal.PREPRANDIAL, hba1c=SFloat(68, -1)))
    )
    meter.add_record(3, announcing(3, 3), bytes(GlucoseMeasurementContext(3, meal=Meal.POSTPRANDIAL)))
    meter.add_record(4, announcing(4, 4))  # announces a context it never sends
    meter.add_record(5, glucose_record(5, BASE + timedelta(minutes=5)))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: cursor_is(outbox, meter.address, 5))
    readings = await outbox.fetch(0, 100)
    assert summary(readings) == [
        ("glucose", 81.0, frozenset()),
        ("glucose", 82.0, frozenset({"meal_preprandial"})),
        ("hba1c", 6.8, frozenset({"meal_preprandial"})),
        ("glucose", 83.0, frozenset({"meal_postprandial"})),
        ("glucose", 84.0, frozenset({"context_missing"})),  # released when the RACP procedure ended
        ("glucose", 85.0, frozenset()),
    ]
    assert readings[1].measured_at == readings[2].measured_at == datetime(2026, 3, 1, 7, 2, tzinfo=UTC)
    assert [r.seq for r in readings] == [1, 2, 3, 4, 5, 6]  # stored in the meter's order
    assert rig.state.counters["glucose_context_missing"] == 1
    assert rig.state.counters["glucose_context_unpaired"] == 0


@pytest.mark.asyncio
async def test_live_context_in_a_later_notification(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await meter_with(air, started)
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: _true(meter.is_subscribed(0x2A34)))
        await until(lambda: _racp_idle(rig))  # the first (empty) report is over
        await meter.notify(0x2A18, announcing(7, 7))
        await meter.notify(0x2A18, glucose_record(8, BASE + timedelta(minutes=8)))  # waits behind 7
        await meter.notify(0x2A34, bytes(GlucoseMeasurementContext(7, meal=Meal.PREPRANDIAL)))
        await until(lambda: cursor_is(outbox, meter.address, 8))
    readings = await outbox.fetch(0, 10)
    assert summary(readings) == [("glucose", 87.0, frozenset({"meal_preprandial"})), ("glucose", 88.0, frozenset())]
    assert rig.state.counters["glucose_context_missing"] == 0


@pytest.mark.asyncio
async def test_a_live_record_whose_context_never_comes_is_stored_after_the_timeout(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await meter_with(air, started)
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    options = replace(OPTIONS, glucose_context_timeout_s=0.2)
    async with running(rig, paired, options):
        await until(lambda: _racp_idle(rig))
        await meter.notify(0x2A18, announcing(3))
        await until(lambda: cursor_is(outbox, meter.address, 3))  # stored without its context
        late = bytes(GlucoseMeasurementContext(3, meal=Meal.BEDTIME))
        await meter.notify(0x2A34, late)
        await until(lambda: _counted(rig, "glucose_context_unpaired", 1))
    [reading] = await outbox.fetch(0, 10)
    assert (reading.value, "context_missing" in reading.flags, "meal_bedtime" in reading.flags) == (83.0, True, False)
    assert rig.state.counters["glucose_context_missing"] == 1


@pytest.mark.asyncio
async def test_a_record_waiting_for_its_context_is_stored_when_the_link_drops(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await meter_with(air, started)
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    options = replace(OPTIONS, glucose_context_timeout_s=3600)
    async with running(rig, paired, options) as session:
        await until(lambda: _racp_idle(rig))
        await meter.notify(0x2A18, announcing(4))
        await meter.notify(0x2A18, glucose_record(5, BASE))  # waits behind 4
        await meter.set_battery_level(42)  # the barrier: handled after both records
        await until(lambda: _true(rig.state.device(meter.address).battery_pct == 42))
        assert await outbox.cursor(meter.address, "glucose") is None  # both still waiting
        await meter.drop_link()
        await asyncio.wait_for(session, 10)
    assert await outbox.cursor(meter.address, "glucose") == 5
    assert [(r.value, "context_missing" in r.flags) for r in await outbox.fetch(0, 10)] == [(84.0, True), (85.0, False)]


@pytest.mark.asyncio
async def test_a_hostile_meter_flooding_announcements_and_stray_contexts(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    """Every record announces a context, none comes, and contexts for records that never existed
    pour in: with more records than may wait (64, see test_glucose_records), every record is
    still stored once, in order, and both kinds of failure are counted."""
    meter = await meter_with(air, started, context_lag=3)
    for n in range(1, 201):
        meter.add_record(n, announcing(n), bytes(GlucoseMeasurementContext(40_000 + n, meal=Meal.CASUAL)))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: cursor_is(outbox, meter.address, 200), within=30)
    readings = await outbox.fetch(0, 1000)
    assert [r.value for r in readings] == [80.0 + n for n in range(1, 201)]
    assert all("context_missing" in r.flags and "meal_casual" not in r.flags for r in readings)
    assert rig.state.counters["glucose_context_missing"] == 200
    assert rig.state.counters["glucose_context_unpaired"] == 200


# -- sequence numbers that wrap at 65535 ----------------------------------------------------


@pytest.mark.asyncio
async def test_records_after_the_wrap_are_requested_and_stored_in_order(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await meter_with(air, started)
    wrapped = [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2]  # storage order, oldest first
    for i, n in enumerate(wrapped):
        meter.add_record(n, glucose_record(n, BASE + timedelta(minutes=i)))
    await outbox.append([], cursor=Cursor(meter.address, "glucose", 65532))  # taken up to 65532
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired) as session:
        # One poll: ">= 65533" ends at 65535, so the session asks "<= 32766" at once.
        await until(lambda: cursor_is(outbox, meter.address, 2))
        meter.add_record(3, glucose_record(3, BASE + timedelta(minutes=20)))
        await meter.drop_link()
        await asyncio.wait_for(session, 10)
    async with running(rig, paired):  # the next connection continues after the wrap: ">= 3"
        await until(lambda: cursor_is(outbox, meter.address, 3))
    readings = await outbox.fetch(0, 100)
    expected = [65533, 65534, 65535, 0, 1, 2, 3]
    assert [r.value for r in readings] == [80.0 + n % 1000 for n in expected]
    assert [r.measured_at for r in readings] == sorted(r.measured_at for r in readings)
    # ">= 3" also matches 65530-65535, numerically larger but older: recognised and not taken.
    assert rig.state.counters["duplicate_record"] == 6


@pytest.mark.asyncio
async def test_a_cursor_at_65535_asks_for_the_records_after_the_wrap(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await meter_with(air, started)
    for i, n in enumerate([65534, 65535, 0, 1]):
        meter.add_record(n, glucose_record(n, BASE + timedelta(minutes=i)))
    await outbox.append([], cursor=Cursor(meter.address, "glucose", 65535))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: cursor_is(outbox, meter.address, 1))
    assert [r.value for r in await outbox.fetch(0, 10)] == [80.0, 81.0]
    assert rig.state.counters["duplicate_record"] == 0


@pytest.mark.asyncio
async def test_old_records_from_before_the_wrap_are_not_taken_again(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    # Cursor 1 after a wrap: ">= 2" also matches 65534 and 65535 (numerically larger, but older).
    meter = await meter_with(air, started)
    for i, n in enumerate([65534, 65535, 0, 1, 2, 3]):
        meter.add_record(n, glucose_record(n, BASE + timedelta(minutes=i)))
    await outbox.append([], cursor=Cursor(meter.address, "glucose", 1))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired):
        await until(lambda: cursor_is(outbox, meter.address, 3))
        await until(lambda: _counted(rig, "duplicate_record", 2))
    assert [r.value for r in await outbox.fetch(0, 10)] == [82.0, 83.0]


# -- RACP answers the decoder rejects --------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "06 00 01 0A",  # response code 10 is reserved
        "06 00 01 00",  # response code 0 is reserved
        "05 00 05",  # a record count one byte wide
        "05 00 05 00 00",  # a record count three bytes wide
        "01 01",  # a request, not a response
        "",  # nothing at all
    ],
)
@pytest.mark.asyncio
async def test_an_undecodable_racp_answer_ends_the_procedure_at_once(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started, garbage: str
) -> None:
    meter = await meter_with(air, started, faulty_response=bytes.fromhex(garbage))
    meter.add_record(1, glucose_record(1, BASE))
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    # An hour's RACP timeout: only the answer itself can end the procedure before the test's own bound.
    options = replace(OPTIONS, racp_timeout_s=3600)
    async with running(rig, paired, options):
        await until(lambda: _counted(rig, f"racp_error:{meter.address}", 1))
        # The session's next state: after the RACP procedure it reads Device Information.
        await until(lambda: _true(rig.state.device(meter.address).manufacturer is not None))
    assert rig.state.counters["decode_error"] == 0  # counted as the device's RACP error instead
    assert await outbox.cursor(meter.address, "glucose") is None


@pytest.mark.asyncio
async def test_a_refusal_ends_the_procedure_and_is_counted(
    air: VirtualAir, radio: Radio, outbox: AsyncOutbox, started: Started
) -> None:
    meter = await meter_with(air, started, faulty_response=bytes.fromhex("06 00 01 04"))  # operator not supported
    paired = PairedDevice(address=meter.address, profile="glucose")
    rig = Rig(radio, outbox, [paired])
    async with running(rig, paired, replace(OPTIONS, racp_timeout_s=3600)):
        await until(lambda: _counted(rig, f"racp_error:{meter.address}", 1))
        await until(lambda: _true(rig.state.device(meter.address).manufacturer is not None))


async def _true(value: bool) -> bool:
    return value


async def _counted(rig: Rig, name: str, n: int) -> bool:
    return rig.state.counters[name] >= n


async def _racp_idle(rig: Rig) -> bool:
    """The session got past its first RACP procedure (it reads Device Information next)."""
    return any(d.manufacturer is not None for d in rig.state.devices())

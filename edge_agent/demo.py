"""Six emulated devices that measure by themselves, for ``vigil edge run --ble emulated`` and ``vigil demo``.

They live in the agent's process on an in-process :class:`~edge_agent.emulation.VirtualAir`, speak
real GATT through bleak, and send physiologically plausible values built with the same codecs the
agent decodes with. At ``speed`` 1: a heart-rate strap and a continuous pulse oximeter notify every
second; a thermometer indicates every 3 minutes; a cuff (every 2 minutes) and a scale (every
5 minutes) store a measurement and open a short connectable window, as real ones do; a glucose
meter starts with ``glucose_records`` stored records and stores a new one every 15 minutes (the
agent fetches them through RACP). Glucose record ``n`` reads ``80 + n`` mg/dL so tests can tell
records apart. Higher ``speed`` divides every interval.

Imports bumble (through the emulation package): tests and the demo only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from edge_agent.devices.blood_pressure import BloodPressureMeasurement
from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.glucose import GlucoseMeasurement, SampleLocation, SampleType
from edge_agent.devices.heart_rate import HeartRateMeasurement, SensorContact
from edge_agent.devices.pulse_oximeter import PlxContinuousMeasurement
from edge_agent.devices.sfloat import Float, SFloat
from edge_agent.devices.thermometer import TemperatureMeasurement, TemperatureType
from edge_agent.devices.weight_scale import WeightMeasurement
from edge_agent.emulation import (
    EmulatedPeripheral,
    EmulatedRadio,
    GlucoseMeter,
    VirtualAir,
    blood_pressure_cuff,
    heart_rate_strap,
    pulse_oximeter,
    thermometer,
    weight_scale,
)
from edge_agent.settings import PairedDevice

__all__ = ["DEMO_DEVICES", "glucose_record", "run_demo_devices"]

DEMO_DEVICES: Final = (
    PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate", name="Demo HR"),
    PairedDevice(address="E0:00:00:00:00:02", profile="pulse_oximeter", name="Demo SpO2"),
    PairedDevice(address="E0:00:00:00:00:03", profile="blood_pressure", name="Demo BP"),
    PairedDevice(address="E0:00:00:00:00:04", profile="weight_scale", name="Demo Scale"),
    PairedDevice(address="E0:00:00:00:00:05", profile="thermometer", name="Demo Temp"),
    PairedDevice(address="E0:00:00:00:00:06", profile="glucose", name="Demo Glucose"),
)
_WINDOW_S: Final = 5.0


def glucose_record(sequence: int, when: datetime) -> bytes:
    """Record ``sequence``: ``80 + sequence`` mg/dL (sent in kg/L), capillary plasma, finger."""
    return bytes(
        GlucoseMeasurement(
            sequence=sequence,
            base_time=DateTime.from_datetime(when),
            concentration=SFloat(80 + sequence % 1000, -5),
            sample_type=SampleType.CAPILLARY_PLASMA,
            sample_location=SampleLocation.FINGER,
        )
    )


class _Walk:
    """A bounded random walk: plausible, slowly changing vital signs."""

    def __init__(self, value: float, low: float, high: float, step: float, rng: random.Random) -> None:
        self.value, self.low, self.high, self.step, self._rng = value, low, high, step, rng

    def next(self) -> float:
        self.value = min(self.high, max(self.low, self.value + self._rng.uniform(-self.step, self.step)))
        return self.value


class _Driver:
    def __init__(self, devices: dict[str, EmulatedPeripheral], zone: ZoneInfo, speed: float, records: int) -> None:
        self.devices = devices
        self.zone = zone
        self.speed = speed
        rng = random.Random(7)  # noqa: S311 - demo vital signs, not secrets
        self.hr = _Walk(72, 55, 110, 2, rng)
        self.spo2 = _Walk(97, 93, 99, 0.4, rng)
        self.systolic = _Walk(128, 105, 160, 4, rng)
        self.temp = _Walk(36.8, 36.2, 37.6, 0.1, rng)
        self.weight = _Walk(78.0, 76.0, 80.0, 0.2, rng)
        self.next_record = records + 1

    def local_now(self) -> datetime:
        return datetime.now(self.zone)

    def stamp(self) -> DateTime:
        return DateTime.from_datetime(self.local_now())

    async def every(self, seconds: float, action: Callable[[], Awaitable[object]]) -> None:
        while True:
            await action()
            await asyncio.sleep(seconds / self.speed)

    async def heart_rate(self) -> None:
        hr = round(self.hr.next())
        value = HeartRateMeasurement(hr, SensorContact.DETECTED, rr_intervals=(round(60 / hr * 1024),))
        await self.devices["Demo HR"].notify(0x2A37, bytes(value))

    async def oximeter(self) -> None:
        value = PlxContinuousMeasurement(spo2=SFloat(round(self.spo2.next())), pulse_rate=SFloat(round(self.hr.value)))
        await self.devices["Demo SpO2"].notify(0x2A5F, bytes(value))

    async def cuff(self) -> None:
        systolic = round(self.systolic.next())
        diastolic = round(systolic * 0.65)
        value = BloodPressureMeasurement(
            systolic=SFloat(systolic),
            diastolic=SFloat(diastolic),
            mean_arterial_pressure=SFloat(round((systolic + 2 * diastolic) / 3)),
            timestamp=self.stamp(),
            pulse_rate=SFloat(round(self.hr.value)),
        )
        await self.devices["Demo BP"].take_measurement(0x2A35, bytes(value))

    async def scale(self) -> None:
        value = WeightMeasurement(weight=round(self.weight.next() / 0.005), timestamp=self.stamp())
        await self.devices["Demo Scale"].take_measurement(0x2A9D, bytes(value))

    async def temperature(self) -> None:
        value = TemperatureMeasurement(
            Float(round(self.temp.next() * 100), -2), timestamp=self.stamp(), temperature_type=TemperatureType.MOUTH
        )
        await self.devices["Demo Temp"].indicate(0x2A1C, bytes(value))

    async def glucose(self) -> None:
        meter = self.devices["Demo Glucose"]
        if isinstance(meter, GlucoseMeter):
            meter.add_record(self.next_record, glucose_record(self.next_record, self.local_now().replace(tzinfo=None)))
            self.next_record += 1

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.every(1, self.heart_rate))
            tasks.create_task(self.every(1, self.oximeter))
            tasks.create_task(self.every(180, self.temperature))
            tasks.create_task(self.every(120, self.cuff))
            tasks.create_task(self.every(300, self.scale))
            await asyncio.sleep(900 / self.speed)
            tasks.create_task(self.every(900, self.glucose))


def _build(air: VirtualAir, zone: ZoneInfo, records: int) -> dict[str, EmulatedPeripheral]:
    clock = lambda: datetime.now(zone)  # noqa: E731 - the devices keep local time, as real ones do
    by_name = {d.name: d.address for d in DEMO_DEVICES}
    devices: list[EmulatedPeripheral] = [
        heart_rate_strap(air, name="Demo HR", address=by_name["Demo HR"], clock=clock),
        pulse_oximeter(air, name="Demo SpO2", address=by_name["Demo SpO2"], clock=clock),
        blood_pressure_cuff(air, name="Demo BP", address=by_name["Demo BP"], clock=clock, connectable_window=_WINDOW_S),
        weight_scale(air, name="Demo Scale", address=by_name["Demo Scale"], clock=clock, connectable_window=_WINDOW_S),
        thermometer(air, name="Demo Temp", address=by_name["Demo Temp"], clock=clock),
    ]
    meter = GlucoseMeter(air, name="Demo Glucose", address=by_name["Demo Glucose"], clock=clock, record_interval=0.02)
    devices.append(meter)
    start = datetime.now(UTC).astimezone(zone).replace(tzinfo=None, microsecond=0)
    for n in range(1, records + 1):
        meter.add_record(n, glucose_record(n, start - timedelta(hours=records - n + 1)))
    return {d.name: d for d in devices}


@contextlib.asynccontextmanager
async def run_demo_devices(
    *, speed: float = 1.0, glucose_records: int = 12, zone: ZoneInfo | None = None
) -> AsyncIterator[EmulatedRadio]:
    """Start the six devices and the agent's emulated central; yield the central."""
    zone = zone or ZoneInfo("UTC")
    air = VirtualAir()
    devices = _build(air, zone, glucose_records)
    for device in devices.values():
        await device.start()
    radio = await EmulatedRadio.open(air)
    driver = asyncio.create_task(_Driver(devices, zone, speed, glucose_records).run())
    try:
        yield radio
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
        await radio.close()
        for device in devices.values():
            await device.stop()

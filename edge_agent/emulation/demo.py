"""Six emulated devices that measure by themselves, for ``vigil edge run --ble emulated`` and ``vigil demo``.

They live in the agent's process on an in-process :class:`~edge_agent.emulation.VirtualAir`, speak
real GATT through bleak, and send physiologically plausible values built with the same codecs the
agent decodes with. At ``speed`` 1: a heart-rate strap and a continuous pulse oximeter notify every
second; a thermometer indicates every 3 minutes (first 10 s in); a cuff (every 2 minutes) and a scale (every
5 minutes) store a measurement and open a short connectable window, as real ones do; a glucose
meter starts with ``glucose_records`` stored records and stores a new one every 15 minutes (the
agent fetches them through RACP). Glucose record ``n`` reads ``80 + n`` mg/dL so tests can tell
records apart. Higher ``speed`` divides every interval.

Imports bumble (through the emulation package): tests and the demo only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
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

__all__ = ["DEMO_DEVICES", "DemoPatient", "demo_devices", "glucose_record", "run_demo_devices"]

DEMO_DEVICES: Final = (
    PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate", name="Demo HR"),
    PairedDevice(address="E0:00:00:00:00:02", profile="pulse_oximeter", name="Demo SpO2"),
    PairedDevice(address="E0:00:00:00:00:03", profile="blood_pressure", name="Demo BP"),
    PairedDevice(address="E0:00:00:00:00:04", profile="weight_scale", name="Demo Scale"),
    PairedDevice(address="E0:00:00:00:00:05", profile="thermometer", name="Demo Temp"),
    PairedDevice(address="E0:00:00:00:00:06", profile="glucose", name="Demo Glucose"),
)
_WINDOW_S: Final = 5.0


def demo_devices(seed: int = 0) -> tuple[PairedDevice, ...]:
    """The six demo devices with addresses of their own for ``seed`` (``0``: :data:`DEMO_DEVICES`).

    A Bluetooth address names one device fleet-wide (the server keeps one row per device id), so
    each demo patient (``vigil demo`` gives each its own seed) wears devices with its own addresses.
    """
    high, low = (seed >> 8) & 0xFF, seed & 0xFF
    return tuple(
        dataclasses.replace(d, address=f"E0:00:{high:02X}:{low:02X}:" + d.address.split(":", 4)[4])
        for d in DEMO_DEVICES
    )


# A day of stored history (UTC hour, measurement): glucose four times, weight once, blood pressure twice.
_DAY: Final = ((7.0, "g"), (7.5, "scale"), (8.0, "bp"), (12.5, "g"), (18.5, "g"), (20.0, "bp"), (22.0, "g"))


def glucose_record(sequence: int, when: datetime, *, mg_dl: float | None = None) -> bytes:
    """Record ``sequence``: ``mg_dl`` (default ``80 + sequence``) mg/dL sent in kg/L, capillary plasma, finger."""
    level = 80 + sequence % 1000 if mg_dl is None else round(mg_dl)
    return bytes(
        GlucoseMeasurement(
            sequence=sequence,
            base_time=DateTime.from_datetime(when),
            concentration=SFloat(level, -5),
            sample_type=SampleType.CAPILLARY_PLASMA,
            sample_location=SampleLocation.FINGER,
        )
    )


class _Walk:
    """A bounded, mean-reverting random walk: plausible, slowly changing vital signs.

    The value wanders around ``target`` (pulled back by ``pull`` of the gap each step); moving the
    target makes the value follow it, which is how a patient deteriorates.
    """

    def __init__(
        self, value: float, low: float, high: float, step: float, rng: random.Random, *, pull: float = 0.0
    ) -> None:
        self.value, self.low, self.high, self.step, self._rng = value, low, high, step, rng
        self.target, self.pull = value, pull

    def next(self) -> float:
        moved = self.value + self._rng.uniform(-self.step, self.step) + self.pull * (self.target - self.value)
        self.value = min(self.high, max(self.low, moved))
        return self.value


@dataclass(frozen=True)
class DemoPatient:
    """Who wears the demo devices: a per-patient baseline, optionally a deterioration and history.

    ``seed`` picks the baseline (heart rate, SpO2, blood pressure, weight, temperature, glucose) and
    the noise. With ``deteriorate_after_s`` the patient's SpO2 target falls towards 86 % and heart
    rate rises towards 122 /min over ``deteriorate_over_s`` (both divided by ``speed``). With
    ``history_days`` the cuff, the scale and the glucose meter start with that many days of stored
    measurements (two blood pressures, one weight, four glucose records a day), handed to the agent
    on the first connection as real devices upload their memory; ``memory`` is the file standing in
    for the devices' flash (what was already handed over, the next glucose sequence), so a restart
    neither repeats nor loses history.
    """

    seed: int = 7
    deteriorate_after_s: float | None = None
    deteriorate_over_s: float = 60.0
    history_days: int = 0
    memory: Path | None = None


@dataclass
class _Memory:
    """What the emulated devices remember across restarts (their flash)."""

    path: Path | None
    history_end: datetime | None = None
    delivered: dict[str, int] = field(default_factory=dict)
    glucose_next: int | None = None

    @classmethod
    def load(cls, path: Path | None) -> _Memory:
        if path is None or not path.exists():
            return cls(path)
        doc = json.loads(path.read_text(encoding="utf-8"))
        end = doc.get("history_end")
        return cls(
            path,
            history_end=None if end is None else datetime.fromisoformat(end),
            delivered={str(k): int(v) for k, v in doc.get("delivered", {}).items()},
            glucose_next=doc.get("glucose_next"),
        )

    def save(self) -> None:
        if self.path is None:
            return
        doc = {
            "history_end": None if self.history_end is None else self.history_end.isoformat(),
            "delivered": self.delivered,
            "glucose_next": self.glucose_next,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.path)


class _Driver:
    def __init__(
        self,
        devices: dict[str, EmulatedPeripheral],
        zone: ZoneInfo,
        speed: float,
        next_record: int,
        patient: DemoPatient,
        memory: _Memory,
        queued_history: dict[str, int],
    ) -> None:
        self.devices = devices
        self.zone = zone
        self.speed = speed
        self.patient = patient
        self.memory = memory
        rng = random.Random(patient.seed)  # noqa: S311 - demo vital signs, not secrets
        b = _baseline(patient.seed)
        self.hr = _Walk(b.hr, 45, 140, 2, rng, pull=0.1)
        self.spo2 = _Walk(b.spo2, 80, 100, 0.5, rng, pull=0.2)
        self.systolic = _Walk(b.systolic, 95, 175, 4, rng, pull=0.15)
        self.temp = _Walk(b.temp, 35.8, 38.0, 0.1, rng, pull=0.2)
        self.weight = _Walk(b.weight, b.weight - 3, b.weight + 3, 0.2, rng, pull=0.3)
        self.glucose_level = _Walk(b.glucose, 75, 170, 8, rng, pull=0.3)
        self.next_record = next_record
        # Per device with stored history: how much of it is queued, and live measurements taken since.
        self._queued = dict(queued_history)
        self._taken_live: dict[str, int] = dict.fromkeys(("Demo BP", "Demo Scale"), 0)
        self._delivered_before = dict(memory.delivered)

    def local_now(self) -> datetime:
        return datetime.now(self.zone)

    def stamp(self) -> DateTime:
        return DateTime.from_datetime(self.local_now())

    async def every(self, seconds: float, action: Callable[[], Awaitable[object]], *, first_after: float = 0) -> None:
        await asyncio.sleep(first_after / self.speed)
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

    async def _take(self, name: str, uuid: int, payload: bytes) -> None:
        self._taken_live[name] += 1
        await self.devices[name].take_measurement(uuid, payload)

    async def cuff(self) -> None:
        await self._take("Demo BP", 0x2A35, _bp(round(self.systolic.next()), round(self.hr.value), self.stamp()))

    async def scale(self) -> None:
        await self._take("Demo Scale", 0x2A9D, _weight(self.weight.next(), self.stamp()))

    async def temperature(self) -> None:
        value = TemperatureMeasurement(
            Float(round(self.temp.next() * 100), -2), timestamp=self.stamp(), temperature_type=TemperatureType.MOUTH
        )
        await self.devices["Demo Temp"].indicate(0x2A1C, bytes(value))

    async def glucose(self) -> None:
        meter = self.devices["Demo Glucose"]
        if isinstance(meter, GlucoseMeter):
            when = self.local_now().replace(tzinfo=None)
            level = None if self.patient.history_days == 0 else self.glucose_level.next()
            meter.add_record(self.next_record, glucose_record(self.next_record, when, mg_dl=level))
            self.next_record += 1
            self.memory.glucose_next = self.next_record
            self.memory.save()

    async def deteriorate(self, after_s: float) -> None:
        """Move the SpO2 and heart-rate targets linearly to 86 % and 122 /min."""
        await asyncio.sleep(after_s / self.speed)
        steps = max(1, int(self.patient.deteriorate_over_s / 5))
        spo2_from, hr_from = self.spo2.target, self.hr.target
        for n in range(1, steps + 1):
            self.spo2.target = spo2_from + (86 - spo2_from) * n / steps
            self.hr.target = hr_from + (122 - hr_from) * n / steps
            await asyncio.sleep(5 / self.speed)

    def _note_handed_over(self) -> None:
        # Stored measurements leave a device first in, first out, and the history was queued
        # before any live one: so the history handed over is what left beyond the live ones.
        changed = False
        for name, queued in self._queued.items():
            pending = len(self.devices[name].stored_measurements)
            handed = min(queued, max(0, queued + self._taken_live[name] - pending))
            total = self._delivered_before.get(name, 0) + handed
            if total != self.memory.delivered.get(name, 0):
                self.memory.delivered[name] = total
                changed = True
        if changed:
            self.memory.save()

    async def remember(self) -> None:
        """Record, every second and when stopped, how much stored history was handed over."""
        try:
            while True:
                await asyncio.sleep(1)
                self._note_handed_over()
        finally:
            self._note_handed_over()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.remember())
            if self.patient.deteriorate_after_s is not None:
                tasks.create_task(self.deteriorate(self.patient.deteriorate_after_s))
            tasks.create_task(self.every(1, self.heart_rate))
            tasks.create_task(self.every(1, self.oximeter))
            tasks.create_task(self.every(180, self.temperature, first_after=10))  # once subscribed
            tasks.create_task(self.every(120, self.cuff))
            tasks.create_task(self.every(300, self.scale))
            await asyncio.sleep(900 / self.speed)
            tasks.create_task(self.every(900, self.glucose))


@dataclass(frozen=True)
class _Baseline:
    hr: float
    spo2: float
    systolic: float
    temp: float
    weight: float
    glucose: float


def _baseline(seed: int) -> _Baseline:
    if seed == 7:  # the original single-agent demo values
        return _Baseline(hr=72, spo2=97, systolic=128, temp=36.8, weight=78.0, glucose=110)
    rng = random.Random(seed * 7919)  # noqa: S311 - demo vital signs, not secrets
    return _Baseline(
        hr=rng.uniform(62, 80),
        spo2=rng.uniform(96.5, 98.5),
        systolic=rng.uniform(112, 126),
        temp=rng.uniform(36.5, 36.9),
        weight=rng.uniform(58, 96),
        glucose=rng.uniform(95, 125),
    )


def _bp(systolic: int, pulse: int, stamp: DateTime) -> bytes:
    diastolic = round(systolic * 0.65)
    return bytes(
        BloodPressureMeasurement(
            systolic=SFloat(systolic),
            diastolic=SFloat(diastolic),
            mean_arterial_pressure=SFloat(round((systolic + 2 * diastolic) / 3)),
            timestamp=stamp,
            pulse_rate=SFloat(pulse),
        )
    )


def _weight(kg: float, stamp: DateTime) -> bytes:
    return bytes(WeightMeasurement(weight=round(kg / 0.005), timestamp=stamp))


def _history(
    meter: GlucoseMeter,
    devices: dict[str, EmulatedPeripheral],
    patient: DemoPatient,
    memory: _Memory,
    zone: ZoneInfo,
) -> tuple[int, dict[str, int]]:
    """Fill the devices' memory with ``history_days`` of measurements before ``memory.history_end``.

    Returns the next glucose sequence and, per device, how many stored measurements were queued.
    Deterministic from the seed, so a restart regenerates the same history and skips what the
    memory file says was already handed over.
    """
    if memory.history_end is None:
        memory.history_end = datetime.now(UTC).replace(microsecond=0)
        memory.save()
    end = memory.history_end
    rng = random.Random(patient.seed * 104729)  # noqa: S311 - demo vital signs, not secrets
    b = _baseline(patient.seed)
    hr = _Walk(b.hr, 50, 110, 3, rng, pull=0.3)
    systolic = _Walk(b.systolic, 100, 160, 5, rng, pull=0.3)
    weight = _Walk(b.weight, b.weight - 3, b.weight + 3, 0.3, rng, pull=0.3)
    glucose = _Walk(b.glucose, 75, 170, 10, rng, pull=0.3)
    start_day = (end - timedelta(days=patient.history_days)).date()

    def at(day: int, hour: float) -> datetime:
        t = datetime.combine(start_day + timedelta(days=day), datetime.min.time(), tzinfo=UTC)
        t += timedelta(hours=hour + rng.uniform(-0.5, 0.5))
        return t

    cuff, scale = [], []
    sequence = 0
    for day in range(patient.history_days + 1):
        for hour, kind in _DAY:
            when = at(day, hour)
            if when >= end:
                continue
            device_time = when.astimezone(zone).replace(tzinfo=None)  # devices keep local time
            stamp = DateTime.from_datetime(device_time)
            if kind == "bp":
                cuff.append(_bp(round(systolic.next()), round(hr.next()), stamp))
            elif kind == "scale":
                scale.append(_weight(weight.next(), stamp))
            else:
                sequence += 1
                meter.add_record(sequence, glucose_record(sequence, device_time, mg_dl=glucose.next()))
    queued: dict[str, int] = {}
    for name, uuid, items in (("Demo BP", 0x2A35, cuff), ("Demo Scale", 0x2A9D, scale)):
        pending = items[memory.delivered.get(name, 0) :]
        for payload in pending:
            devices[name].store_measurement(uuid, payload)
        queued[name] = len(pending)
    return max(sequence + 1, memory.glucose_next or 0), queued


def _build(
    air: VirtualAir, zone: ZoneInfo, records: int, paired: Sequence[PairedDevice]
) -> dict[str, EmulatedPeripheral]:
    clock = lambda: datetime.now(zone)  # noqa: E731 - the devices keep local time, as real ones do
    by_name = {d.name: d.address for d in DEMO_DEVICES} | {d.name: d.address for d in paired if d.name}
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
    *,
    speed: float = 1.0,
    glucose_records: int = 12,
    zone: ZoneInfo | None = None,
    patient: DemoPatient | None = None,
    paired: Sequence[PairedDevice] = DEMO_DEVICES,
) -> AsyncIterator[EmulatedRadio]:
    """Start the six devices and the agent's emulated central; yield the central.

    Each device takes the address the agent paired under its name (``paired``; see :func:`demo_devices`).

    Without ``patient.history_days`` the glucose meter holds ``glucose_records`` hourly records
    reading ``80 + n`` mg/dL; with it, the devices hold that much plausible history instead.
    """
    zone = zone or ZoneInfo("UTC")
    patient = patient or DemoPatient()
    air = VirtualAir()
    memory = _Memory.load(patient.memory)
    devices = _build(air, zone, glucose_records if patient.history_days == 0 else 0, paired)
    meter = devices["Demo Glucose"]
    if patient.history_days > 0 and isinstance(meter, GlucoseMeter):
        next_record, queued = _history(meter, devices, patient, memory, zone)
    else:
        next_record, queued = max(glucose_records + 1, memory.glucose_next or 0), {}
    for device in devices.values():
        await device.start()
    radio = await EmulatedRadio.open(air)
    driver = asyncio.create_task(_Driver(devices, zone, speed, next_record, patient, memory, queued).run())
    try:
        yield radio
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
        await radio.close()
        for device in devices.values():
            await device.stop()

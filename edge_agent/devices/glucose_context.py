"""Glucose Measurement Context (0x2A34, Glucose service 0x1808, notify).

A meter sends it right after the Glucose Measurement (0x2A18) whose ``context_follows`` flag is
set, with the same sequence number; :func:`paired_readings` joins the two.

flags (b0 carbohydrate id + carbohydrate; b1 meal; b2 tester-health; b3 exercise duration +
intensity; b4 medication id + medication; b5 medication in litres, else kilograms; b6 HbA1c;
b7 extended flags) | sequence uint16 | extended flags uint8 | carbohydrate id uint8 |
carbohydrate SFLOAT (kg) | meal uint8 | tester (low nibble) and health (high nibble) |
exercise duration uint16 (s; 0xFFFF = overrun) | exercise intensity uint8 (%) |
medication id uint8 | medication SFLOAT (kg, or L with b5) | HbA1c SFLOAT (%).

Codes (0 and the others not listed are reserved -> ``reserved_value``): carbohydrate 1 breakfast,
2 lunch, 3 dinner, 4 snack, 5 drink, 6 supper, 7 brunch; meal 1 preprandial (before a meal),
2 postprandial (after a meal), 3 fasting, 4 casual (snacks, drinks), 5 bedtime; tester
1 self, 2 health care professional, 3 lab test, 15 not available; health 1 minor health issues,
2 major health issues, 3 during menses, 4 under stress, 5 no health issues, 15 not available;
medication 1 rapid-acting insulin, 2 short-acting, 3 intermediate-acting, 4 long-acting,
5 pre-mixed insulin.

The extended flags are reserved for future use: their value is kept as sent, and since the
packet must still end exactly after the fields the flags byte announces, a future extension that
adds fields is refused as ``trailing_bytes`` rather than misread.

Readings: ``hba1c`` (%) when present, flagged with the meal (:data:`MEAL_FLAGS`). Alone the
context has no time; paired, its readings share the measurement's device time and sequence.
Carbohydrate, tester, health, exercise and medication are kept on the type only (no catalogue
metric).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from edge_agent.devices._codec import Reader, check_uint, enum_value, le, translating
from edge_agent.devices.errors import InvalidMeasurement
from edge_agent.devices.glucose import GlucoseMeasurement
from edge_agent.devices.reading import DecodedReading, ReadingContext
from edge_agent.devices.sfloat import SFloat

__all__ = [
    "CONTEXT_MISSING",
    "MEAL_FLAGS",
    "CarbohydrateId",
    "GlucoseMeasurementContext",
    "Health",
    "Meal",
    "MedicationId",
    "MedicationUnit",
    "Tester",
    "paired_readings",
]

_CHAR: Final = 0x2A34
_CARBOHYDRATE: Final = 0x01
_MEAL: Final = 0x02
_TESTER_HEALTH: Final = 0x04
_EXERCISE: Final = 0x08
_MEDICATION: Final = 0x10
_LITRES: Final = 0x20
_HBA1C: Final = 0x40
_EXTENDED: Final = 0x80

EXERCISE_OVERRUN: Final = 0xFFFF
# A glucose reading whose measurement announced a context that never came.
CONTEXT_MISSING: Final = "context_missing"


class CarbohydrateId(enum.IntEnum):
    BREAKFAST = 1
    LUNCH = 2
    DINNER = 3
    SNACK = 4
    DRINK = 5
    SUPPER = 6
    BRUNCH = 7


class Meal(enum.IntEnum):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5

    @property
    def flag(self) -> str:
        return MEAL_FLAGS[self]


MEAL_FLAGS: Final = {meal: f"meal_{meal.name.lower()}" for meal in Meal}
"""The reading flag of each meal: ``meal_preprandial``, ``meal_postprandial``, ``meal_fasting``,
``meal_casual``, ``meal_bedtime``."""


class Tester(enum.IntEnum):
    SELF = 1
    HEALTH_CARE_PROFESSIONAL = 2
    LAB_TEST = 3
    NOT_AVAILABLE = 15


class Health(enum.IntEnum):
    MINOR_HEALTH_ISSUES = 1
    MAJOR_HEALTH_ISSUES = 2
    DURING_MENSES = 3
    UNDER_STRESS = 4
    NO_HEALTH_ISSUES = 5
    NOT_AVAILABLE = 15


class MedicationId(enum.IntEnum):
    RAPID_ACTING_INSULIN = 1
    SHORT_ACTING_INSULIN = 2
    INTERMEDIATE_ACTING_INSULIN = 3
    LONG_ACTING_INSULIN = 4
    PRE_MIXED_INSULIN = 5


class MedicationUnit(enum.Enum):
    KILOGRAMS = "kg"
    LITRES = "L"


def _together(field: str, *values: object) -> None:
    if any(v is None for v in values) and any(v is not None for v in values):
        raise InvalidMeasurement(_CHAR, field, "these fields come together")


@dataclass(frozen=True, slots=True)
class GlucoseMeasurementContext:
    """The context of glucose record ``sequence``. Pairs come together or not at all:
    ``carbohydrate_id``/``carbohydrate`` (kg), ``tester``/``health``,
    ``exercise_duration`` (s)/``exercise_intensity`` (%), ``medication_id``/``medication`` (in
    ``medication_unit``). ``medication_unit`` is the flag bit as sent (it only means something
    with a medication)."""

    sequence: int
    extended_flags: int | None = None
    carbohydrate_id: CarbohydrateId | None = None
    carbohydrate: SFloat | None = None
    meal: Meal | None = None
    tester: Tester | None = None
    health: Health | None = None
    exercise_duration: int | None = None
    exercise_intensity: int | None = None
    medication_id: MedicationId | None = None
    medication: SFloat | None = None
    medication_unit: MedicationUnit = MedicationUnit.KILOGRAMS
    hba1c: SFloat | None = None

    CHARACTERISTIC: ClassVar[int] = _CHAR

    def __post_init__(self) -> None:
        check_uint(_CHAR, "sequence", self.sequence, 16)
        if self.extended_flags is not None:
            check_uint(_CHAR, "extended_flags", self.extended_flags, 8)
        _together("carbohydrate", self.carbohydrate_id, self.carbohydrate)
        _together("tester", self.tester, self.health)
        _together("exercise", self.exercise_duration, self.exercise_intensity)
        _together("medication", self.medication_id, self.medication)
        if self.exercise_duration is not None:
            check_uint(_CHAR, "exercise_duration", self.exercise_duration, 16)
        if self.exercise_intensity is not None:
            check_uint(_CHAR, "exercise_intensity", self.exercise_intensity, 8)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Self:
        reader = Reader(_CHAR, payload)
        flags = reader.u8()  # all eight bits are defined
        sequence = reader.u16()
        extended = reader.u8() if flags & _EXTENDED else None
        carb_id = carbohydrate = meal = tester = health = None
        duration = intensity = medication_id = medication = hba1c = None
        if flags & _CARBOHYDRATE:
            carb_id = enum_value(reader, CarbohydrateId, reader.u8(), "carbohydrate_id")
            carbohydrate = SFloat.read(reader)
        if flags & _MEAL:
            meal = enum_value(reader, Meal, reader.u8(), "meal")
        if flags & _TESTER_HEALTH:
            nibbles = reader.u8()
            tester = enum_value(reader, Tester, nibbles & 0x0F, "tester")
            health = enum_value(reader, Health, nibbles >> 4, "health")
        if flags & _EXERCISE:
            duration, intensity = reader.u16(), reader.u8()
        if flags & _MEDICATION:
            medication_id = enum_value(reader, MedicationId, reader.u8(), "medication_id")
            medication = SFloat.read(reader)
        if flags & _HBA1C:
            hba1c = SFloat.read(reader)
        reader.finish()
        unit = MedicationUnit.LITRES if flags & _LITRES else MedicationUnit.KILOGRAMS
        with translating(_CHAR):
            return cls(
                sequence,
                extended,
                carb_id,
                carbohydrate,
                meal,
                tester,
                health,
                duration,
                intensity,
                medication_id,
                medication,
                unit,
                hba1c,
            )

    def __bytes__(self) -> bytes:
        flags = _LITRES if self.medication_unit is MedicationUnit.LITRES else 0
        body = le(self.sequence, 2)
        if self.extended_flags is not None:
            flags |= _EXTENDED
            body += le(self.extended_flags, 1)
        if self.carbohydrate_id is not None and self.carbohydrate is not None:
            flags |= _CARBOHYDRATE
            body += le(self.carbohydrate_id, 1) + bytes(self.carbohydrate)
        if self.meal is not None:
            flags |= _MEAL
            body += le(self.meal, 1)
        if self.tester is not None and self.health is not None:
            flags |= _TESTER_HEALTH
            body += le(self.health << 4 | self.tester, 1)
        if self.exercise_duration is not None and self.exercise_intensity is not None:
            flags |= _EXERCISE
            body += le(self.exercise_duration, 2) + le(self.exercise_intensity, 1)
        if self.medication_id is not None and self.medication is not None:
            flags |= _MEDICATION
            body += le(self.medication_id, 1) + bytes(self.medication)
        if self.hba1c is not None:
            flags |= _HBA1C
            body += bytes(self.hba1c)
        return bytes((flags,)) + body

    # -- meaning ------------------------------------------------------------------------
    @property
    def carbohydrate_grams(self) -> float | None:
        return None if self.carbohydrate is None else self.carbohydrate.convert(1000.0)

    @property
    def medication_milli(self) -> float | None:
        """The medication in milligrams (kg) or millilitres (L), per :attr:`medication_unit`."""
        return None if self.medication is None else self.medication.convert(1000.0)

    @property
    def exercise_overrun(self) -> bool:
        """Exercise lasted longer than the field can say (0xFFFF s, about 18 h)."""
        return self.exercise_duration == EXERCISE_OVERRUN

    @property
    def flags(self) -> frozenset[str]:
        return frozenset() if self.meal is None else frozenset({self.meal.flag})

    def readings(self) -> list[DecodedReading]:
        """The context alone: HbA1c without a time (the measurement carries it)."""
        return self.readings_with(ReadingContext.create(_CHAR, flags=self.flags, sequence=self.sequence))

    def readings_with(self, ctx: ReadingContext) -> list[DecodedReading]:
        """The context's readings built by ``ctx`` (the paired measurement's time and flags)."""
        if self.hba1c is None:
            return []
        return [ctx.number("hba1c", self.hba1c)]


def paired_readings(
    measurement: GlucoseMeasurement, context: GlucoseMeasurementContext | None, *, context_missing: bool = False
) -> list[DecodedReading]:
    """The readings of a glucose record and its context (same sequence number): the glucose
    reading flagged with the meal, and HbA1c timed like the glucose reading and flagged with the
    meal only (the sensor status, sample type and site describe the glucose sample).

    ``context_missing``: the measurement announced a context that never came; its readings are
    flagged :data:`CONTEXT_MISSING`. A control-solution record has no readings at all.
    """
    if context is not None and context.sequence != measurement.sequence:
        raise InvalidMeasurement(_CHAR, "sequence", "the context belongs to another record")
    if measurement.is_control_solution:
        return []
    flags = set(measurement.flags)
    if context is not None:
        flags |= context.flags
    if context_missing:
        flags.add(CONTEXT_MISSING)
    out = measurement.readings_with(_timed_like(measurement, GlucoseMeasurement.CHARACTERISTIC, flags))
    if context is not None:
        out += context.readings_with(_timed_like(measurement, _CHAR, context.flags))
    return out


def _timed_like(measurement: GlucoseMeasurement, characteristic: int, flags: Iterable[str]) -> ReadingContext:
    return ReadingContext.create(
        characteristic,
        measurement.base_time,
        offset_minutes=measurement.time_offset,
        flags=flags,
        sequence=measurement.sequence,
    )

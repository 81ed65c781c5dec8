"""Inputs and outputs of the billing evidence (frozen dataclasses, checked on construction).

Days and months are the *practice's* calendar: the evaluation takes the practice's time zone
(a ``ZoneInfo``, from the organisation's settings) and turns every timestamp into a local date
with it, so a reading at 23:30 local time counts for that day whatever UTC says, and a day of 23
or 25 hours (a DST change) is still one day.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from clinician_api.billing.errors import InvalidBillingInput
from clinician_api.billing.rules import Basis

__all__ = [
    "Capture",
    "CodeEvaluation",
    "Episode",
    "Evaluation",
    "PatientBilling",
    "ReadingDay",
    "ReadingSource",
    "SetupEvent",
    "TimeEntry",
    "TimeKind",
    "local_date",
    "reading_days",
]


class ReadingSource(enum.StrEnum):
    DEVICE = "device"  # transmitted by the device through the edge agent: counts toward days
    MANUAL = "manual"  # typed in by a person: never counts (CMS: data must be transmitted automatically)


class TimeKind(enum.StrEnum):
    REVIEW = "review"
    INTERACTIVE_COMMUNICATION = "interactive_communication"
    CARE_PLANNING = "care_planning"


class Capture(enum.StrEnum):
    TIMER = "timer"
    MANUAL = "manual"


def _aware(record: str, name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidBillingInput(record, name, "must be a timezone-aware datetime")
    return value


def _date(record: str, name: str, value: object) -> None:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidBillingInput(record, name, "must be a date")


def local_date(at: datetime, zone: ZoneInfo) -> date:
    """The practice's calendar date of the instant ``at``."""
    return at.astimezone(zone).date()


@dataclass(frozen=True, slots=True)
class ReadingDay:
    """One practice-calendar day and how many readings it had, by source."""

    day: date
    device_readings: int
    manual_readings: int = 0

    def __post_init__(self) -> None:
        _date("ReadingDay", "day", self.day)
        for name in ("device_readings", "manual_readings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidBillingInput("ReadingDay", name, "must be a non-negative integer")


def reading_days(readings: Iterable[tuple[datetime, ReadingSource]], zone: ZoneInfo) -> list[ReadingDay]:
    """Per practice-calendar day, the count of device and manual readings (for the store's rows)."""
    counts: dict[date, list[int]] = {}
    for at, source in readings:
        day = local_date(_aware("reading", "at", at), zone)
        slot = counts.setdefault(day, [0, 0])
        slot[0 if ReadingSource(source) is ReadingSource.DEVICE else 1] += 1
    return [ReadingDay(day, device, manual) for day, (device, manual) in sorted(counts.items())]


@dataclass(frozen=True, slots=True)
class TimeEntry:
    """Management time: counted in the calendar month (practice zone) in which it started."""

    clinician_id: str
    started_at: datetime
    minutes: int
    kind: TimeKind
    capture: Capture = Capture.TIMER

    def __post_init__(self) -> None:
        _aware("TimeEntry", "started_at", self.started_at)
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, int) or not 0 <= self.minutes <= 24 * 60:
            raise InvalidBillingInput("TimeEntry", "minutes", "must be an integer 0-1440")
        if not isinstance(self.clinician_id, str) or not self.clinician_id:
            raise InvalidBillingInput("TimeEntry", "clinician_id", "must be a non-empty string")
        object.__setattr__(self, "kind", TimeKind(self.kind))
        object.__setattr__(self, "capture", Capture(self.capture))


@dataclass(frozen=True, slots=True)
class SetupEvent:
    """The recorded set-up of the equipment and education of the patient on its use."""

    at: datetime
    clinician_id: str

    def __post_init__(self) -> None:
        _aware("SetupEvent", "at", self.at)


@dataclass(frozen=True, slots=True)
class Episode:
    """An episode of care: 30-day device-supply periods count from ``start`` (practice dates)."""

    start: date
    end: date | None = None
    setup: SetupEvent | None = None

    def __post_init__(self) -> None:
        _date("Episode", "start", self.start)
        if self.end is not None:
            _date("Episode", "end", self.end)
            if self.end < self.start:
                raise InvalidBillingInput("Episode", "end", "before the start")


@dataclass(frozen=True, slots=True)
class PatientBilling:
    """Everything the evaluation needs about one patient (the route loads it from the store)."""

    patient_id: str
    org_id: str
    episode: Episode
    days: Sequence[ReadingDay] = field(default_factory=tuple)
    time: Sequence[TimeEntry] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", tuple(self.days))
        object.__setattr__(self, "time", tuple(self.time))


@dataclass(frozen=True, slots=True)
class CodeEvaluation:
    """One code: eligible or not, how many units, the evidence, and what is missing (if anything)."""

    code: str
    eligible: bool
    units: int
    evidence: str
    missing: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The codes of one patient for one period (``start``..``end`` inclusive, practice dates).

    ``final``: the period is over (or the episode ended) on the ``as_of`` date given, so the
    evidence can no longer change; before that the codes say what the evidence supports so far.
    """

    patient_id: str
    org_id: str
    basis: Basis
    start: date
    end: date
    final: bool
    codes: tuple[CodeEvaluation, ...]

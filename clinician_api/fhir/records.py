"""The plain inputs of the FHIR mapping: what the store holds, as frozen dataclasses.

The mapping never reads the database: the API's routes fill these from the store's rows and hand
them in. Each record checks on construction what the mapping relies on and raises
:class:`~clinician_api.fhir.errors.InvalidRecord` otherwise; timestamps must be timezone-aware
and are kept in UTC.

Special values
    Vigil does not store IEEE 11073 special values today: the edge agent drops a reading whose
    device sent NaN, NRes, +INF or -INF (and counts it as ``dropped_absent_value``), and
    ``readings.value`` is ``NOT NULL``. A :class:`ReadingRecord` can nevertheless carry one, so the
    mapping is ready when the store keeps them: either ``value=None`` with ``absent_reason`` (the
    FHIR ``data-absent-reason`` code the edge decoders already attach: ``not-a-number``,
    ``error`` for NRes and the reserved code, ``positive-infinity``, ``negative-infinity``), or a
    non-finite float (NaN, +inf, -inf, as a ``double precision`` column could hold them), which is
    normalised to ``value=None`` and the matching reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

from clinician_api.fhir.errors import InvalidRecord
from rpm_core.metrics import CATALOGUE

__all__ = ["ABSENT_REASONS", "DeviceRecord", "PatientRecord", "ReadingRecord"]

# The FHIR data-absent-reason codes an IEEE 11073 special value maps to (edge_agent.devices.sfloat).
ABSENT_REASONS: Final = frozenset({"not-a-number", "error", "positive-infinity", "negative-infinity"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(record: str, name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(record, name, "must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _text(record: str, name: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise InvalidRecord(record, name, "must be a non-empty string")


@dataclass(frozen=True, slots=True)
class PatientRecord:
    patient_id: str
    org_id: str
    display_name: str
    birth_date: date | None = None
    mrn: str | None = None

    def __post_init__(self) -> None:
        _text("PatientRecord", "patient_id", self.patient_id, optional=False)
        _text("PatientRecord", "org_id", self.org_id, optional=False)
        _text("PatientRecord", "display_name", self.display_name, optional=False)
        _text("PatientRecord", "mrn", self.mrn)
        if self.birth_date is not None and (
            not isinstance(self.birth_date, date) or isinstance(self.birth_date, datetime)
        ):
            raise InvalidRecord("PatientRecord", "birth_date", "must be a date")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A measuring device as the store knows it (``devices`` plus the patient its agent serves)."""

    device_id: str
    org_id: str
    agent_id: str
    patient_id: str | None = None
    profile: str | None = None
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    battery_pct: int | None = None
    last_seen: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("device_id", "org_id", "agent_id"):
            _text("DeviceRecord", name, getattr(self, name), optional=False)
        for name in ("patient_id", "profile", "name", "manufacturer", "model", "serial", "firmware"):
            _text("DeviceRecord", name, getattr(self, name))
        if self.battery_pct is not None and (
            isinstance(self.battery_pct, bool)
            or not isinstance(self.battery_pct, int)
            or not 0 <= self.battery_pct <= 100
        ):
            raise InvalidRecord("DeviceRecord", "battery_pct", "must be an integer 0-100")
        object.__setattr__(self, "last_seen", _aware("DeviceRecord", "last_seen", self.last_seen))


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    """One stored reading (a ``readings`` row). ``flags`` as in the table, in stored order."""

    patient_id: str
    org_id: str
    agent_id: str
    device_id: str
    seq: int
    metric: str
    value: float | None
    unit: str
    measured_at: datetime
    received_at: datetime | None = None
    device_time: str | None = None
    flags: Sequence[str] = field(default_factory=tuple)
    absent_reason: str | None = None

    def __post_init__(self) -> None:
        rec = "ReadingRecord"
        for name in ("patient_id", "org_id", "agent_id", "device_id"):
            _text(rec, name, getattr(self, name), optional=False)
        _text(rec, "device_time", self.device_time)
        entry = CATALOGUE.get(self.metric) if isinstance(self.metric, str) else None
        if entry is None:
            raise InvalidRecord(rec, "metric", "not in the metric catalogue")
        if self.unit != entry.unit:
            raise InvalidRecord(rec, "unit", f"{self.metric} is stored in {entry.unit}")
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise InvalidRecord(rec, "seq", "must be a non-negative integer")
        measured = _aware(rec, "measured_at", self.measured_at)
        if measured is None or measured < _EPOCH:
            raise InvalidRecord(rec, "measured_at", "must be on or after 1970-01-01")
        object.__setattr__(self, "measured_at", measured)
        object.__setattr__(self, "received_at", _aware(rec, "received_at", self.received_at))
        if isinstance(self.flags, str) or not all(isinstance(f, str) and f for f in self.flags):
            raise InvalidRecord(rec, "flags", "must be a sequence of non-empty strings")
        object.__setattr__(self, "flags", tuple(self.flags))
        self._normalise_value(rec)

    def _normalise_value(self, rec: str) -> None:
        value = self.value
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidRecord(rec, "value", "must be a number or None")
        if value is not None and not math.isfinite(value):
            reason = "not-a-number" if math.isnan(value) else "positive-infinity" if value > 0 else "negative-infinity"
            if self.absent_reason not in (None, reason):
                raise InvalidRecord(rec, "absent_reason", "does not match the non-finite value")
            object.__setattr__(self, "value", None)
            object.__setattr__(self, "absent_reason", reason)
            return
        if value is None:
            if self.absent_reason not in ABSENT_REASONS:
                raise InvalidRecord(rec, "absent_reason", "a reading without a value needs a data-absent-reason code")
        elif self.absent_reason is not None:
            raise InvalidRecord(rec, "absent_reason", "a reading with a value has no absent reason")
        else:
            object.__setattr__(self, "value", float(value))

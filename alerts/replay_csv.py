"""The replay input: a CSV of readings, header ``patient_id,time,metric,value``.

- ``time``: ISO 8601; an offset is converted to UTC, a time without one is read as UTC (the format
  says UTC).
- ``metric``: a catalogue name (``rpm_core.metrics``), case-insensitive.
- ``value``: a number in the metric's canonical unit, inside the catalogue's plausible range (the
  range ingest enforces: a value outside it never reaches the alert engine).

Columns may come in any order; extra columns are ignored; blank lines are skipped; exact duplicate
rows (same patient, time, metric and value) count once. By default any bad row rejects the whole
file before anything is evaluated (:class:`~alerts.errors.ReplayInputError` lists every bad line);
with ``skip_bad`` the bad rows are skipped and reported.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from alerts.errors import ReplayInputError
from rpm_core.metrics import CATALOGUE

__all__ = ["HEADER", "ReplayReading", "parse_readings"]

HEADER: Final = ("patient_id", "time", "metric", "value")
_MAX_PROBLEMS: Final = 1000


@dataclass(frozen=True, slots=True, order=True)
class ReplayReading:
    time: datetime
    patient_id: str
    metric: str
    value: float
    line: int = 0


def _parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("time is not ISO 8601") from None
    if t.tzinfo is None or t.utcoffset() is None:
        return t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def _parse_row(fields: list[str], cols: dict[str, int]) -> tuple[str, datetime, str, float]:
    if len(fields) <= max(cols.values()):
        raise ValueError(f"expected at least {max(cols.values()) + 1} columns, found {len(fields)}")
    patient = fields[cols["patient_id"]].strip()
    if not patient or len(patient) > 128:
        raise ValueError("patient_id is empty or longer than 128 characters")
    when = _parse_time(fields[cols["time"]].strip())
    name = fields[cols["metric"]].strip().lower()
    metric = CATALOGUE.get(name)
    if metric is None:
        raise ValueError(f"unknown metric {name[:40]!r}")
    try:
        value = float(fields[cols["value"]].strip())
    except ValueError:
        raise ValueError("value is not a number") from None
    if not math.isfinite(value) or not metric.is_plausible(value):
        raise ValueError(f"{name} value outside the plausible range [{metric.low:g}, {metric.high:g}] {metric.unit}")
    return patient, when, name, value


def _columns(header: list[str] | None) -> dict[str, int]:
    if header is None:
        raise ReplayInputError([(1, "empty file: expected the header " + ",".join(HEADER))])
    names = [h.strip().lstrip("\ufeff").lower() for h in header]
    missing = [h for h in HEADER if h not in names]
    if missing:
        raise ReplayInputError([(1, f"header lacks {', '.join(missing)}: expected {','.join(HEADER)}")])
    return {h: names.index(h) for h in HEADER}


def parse_readings(
    lines: Iterable[str], *, skip_bad: bool = False
) -> tuple[list[ReplayReading], list[tuple[int, str]]]:
    """All readings in time order (stable for equal times) and the problems found.

    Raises :class:`ReplayInputError` on a bad header, and on any bad row unless ``skip_bad``.
    """
    reader = csv.reader(lines)
    try:
        cols = _columns(next(reader, None))
        readings: list[ReplayReading] = []
        problems: list[tuple[int, str]] = []
        seen: set[tuple[str, datetime, str, float]] = set()
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            line = reader.line_num
            try:
                key = _parse_row(fields, cols)
            except ValueError as exc:
                if len(problems) < _MAX_PROBLEMS:
                    problems.append((line, str(exc)))
                continue
            if key in seen:
                continue
            seen.add(key)
            patient, when, metric, value = key
            readings.append(ReplayReading(when, patient, metric, value, line))
    except csv.Error as exc:
        raise ReplayInputError([(reader.line_num, f"malformed CSV: {exc}")]) from exc
    if problems and not skip_bad:
        raise ReplayInputError(problems)
    readings.sort(key=lambda r: (r.time, r.patient_id, r.line))
    return readings, problems

"""Glucose records waiting for their measurement context (sans-IO; the session does the I/O).

A meter sends a Glucose Measurement (0x2A18) and, when its ``context_follows`` flag is set, a
Glucose Measurement Context (0x2A34) with the same sequence number: usually the very next
notification, but it may come later, after other records of the same RACP report. A record
announcing a context is held here until the context arrives; records behind it wait too, so
records are released (and stored, and the RACP cursor advanced) strictly in arrival order.

Waiting is bounded: :meth:`ContextPairing.flush` (the session calls it when the RACP procedure
ends, however it ends, and when the link goes down) and :meth:`ContextPairing.expire` (a deadline
per record, ``timeout`` after it arrived) release a record without its context, marked
``context_missing``; at most ``max_pending`` records wait, the oldest is released first when
more arrive. A record is never dropped here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from edge_agent.devices.glucose import GlucoseMeasurement
from edge_agent.devices.glucose_context import GlucoseMeasurementContext, paired_readings
from edge_agent.devices.reading import DecodedReading

__all__ = ["ContextPairing", "GlucoseRecord"]

_MAX_PENDING: Final = 64


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    """A glucose measurement ready to store, with its context (or marked as having lost it)."""

    measurement: GlucoseMeasurement
    received_at: datetime
    context: GlucoseMeasurementContext | None = None
    context_missing: bool = False

    @property
    def sequence(self) -> int:
        return self.measurement.sequence

    def readings(self) -> list[DecodedReading]:
        return paired_readings(self.measurement, self.context, context_missing=self.context_missing)


@dataclass(slots=True)
class _Waiting:
    measurement: GlucoseMeasurement
    received_at: datetime
    deadline: float
    context: GlucoseMeasurementContext | None = None

    @property
    def complete(self) -> bool:
        return self.context is not None or not self.measurement.context_follows

    def release(self) -> GlucoseRecord:
        return GlucoseRecord(self.measurement, self.received_at, self.context, context_missing=not self.complete)


class ContextPairing:
    """Holds glucose records until their context arrives; every method returns the records it
    releases, oldest first. ``now`` and deadlines are in the caller's monotonic seconds."""

    def __init__(self, *, timeout: float, max_pending: int = _MAX_PENDING) -> None:
        self._timeout = timeout
        self._max = max_pending
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, sequence: object) -> bool:
        return sequence in self._waiting

    @property
    def last_sequence(self) -> int | None:
        """The sequence number of the newest record held, if any."""
        return next(reversed(self._waiting), None)

    def measurement(self, measurement: GlucoseMeasurement, received_at: datetime, now: float) -> list[GlucoseRecord]:
        """Take a new record (the caller has checked that it is new)."""
        self._waiting[measurement.sequence] = _Waiting(measurement, received_at, now + self._timeout)
        released = self._release()
        while len(self._waiting) > self._max:
            released.append(self._waiting.popitem(last=False)[1].release())
            released += self._release()
        return released

    def context(self, context: GlucoseMeasurementContext) -> tuple[list[GlucoseRecord], bool]:
        """Attach ``context`` to its record; whether a held record without a context took it."""
        waiting = self._waiting.get(context.sequence)
        if waiting is None or waiting.context is not None:
            return [], False
        waiting.context = context
        return self._release(), True

    def expire(self, now: float) -> list[GlucoseRecord]:
        """Release the records whose deadline has passed (and those complete behind them)."""
        released: list[GlucoseRecord] = []
        while self._waiting:
            head = next(iter(self._waiting.values()))
            if not head.complete and head.deadline > now:
                break
            released.append(self._waiting.popitem(last=False)[1].release())
        return released

    def flush(self) -> list[GlucoseRecord]:
        """Release everything held: no context is coming any more."""
        released = [w.release() for w in self._waiting.values()]
        self._waiting.clear()
        return released

    @property
    def next_deadline(self) -> float | None:
        """When the oldest incomplete record stops waiting, if one is waiting."""
        return next((w.deadline for w in self._waiting.values() if not w.complete), None)

    def _release(self) -> list[GlucoseRecord]:
        released: list[GlucoseRecord] = []
        while self._waiting:
            head = next(iter(self._waiting.values()))
            if not head.complete:
                break
            released.append(self._waiting.popitem(last=False)[1].release())
        return released

"""Time as a seam: production code asks a :class:`Clock`; tests and replays pass a :class:`ManualClock`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "ensure_utc"]


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for timeouts and rates)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, when: datetime) -> None:
        when = ensure_utc(when)
        if when < self._now:
            raise ValueError("a clock does not go backwards")
        self._mono += (when - self._now).total_seconds()
        self._now = when


def ensure_utc(value: datetime) -> datetime:
    """``value`` converted to UTC; a naive datetime is a bug (which zone?) and raises ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: clinical times must carry a time zone")
    return value.astimezone(UTC)

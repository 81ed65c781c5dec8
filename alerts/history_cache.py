"""The engine's per-patient histories, kept from one feed page to the next.

Without it every page loads each of its patients' whole rule lookback (weeks, for the trends) from
the database again. With it a patient's history is loaded once and then grown by the readings the
feed delivers. Pure and in memory; the engine decides what to load.

What an entry holds, exactly: every reading of the patient with ``time >= covered_from`` stored by
a transaction below the partition's watermark ``mark`` (``store.feed``). That set is fixed once the
watermark is (every transaction below it has finished), so the entry stays right as long as

- it was loaded with ``ingest_xid < mark`` and grown by every later page of its partition;
- the partition's watermark is still the one the cache recorded when it last committed a page
  (:meth:`begin` drops the entries of a partition whose watermark moved without this cache, or
  that this worker no longer owns; :meth:`begin` also forgets every recorded watermark until
  :meth:`commit`, so a page whose transaction rolled back leaves its partitions' entries dropped
  at the next page instead of holding readings the database does not count as consumed).

A reading older than ``covered_from`` is not added (the entry does not claim that time); an
evaluation that needs history before ``covered_from`` reloads (:meth:`get` answers None). Memory is
bounded twice: each entry forgets readings older than the lookback it was last asked for (plus a
day of slack for readings arriving out of order), and the cache holds at most ``max_readings``
readings, dropping the least recently used patients beyond that.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from alerts.history import History
from alerts.model import Obs

__all__ = ["HistoryCache"]

# Readings kept beyond the lookback, so that one arriving a little out of order needs no reload;
# an entry is trimmed only once it holds this much more than it needs (trimming is a list copy).
_SLACK: Final = timedelta(days=1)


@dataclass(slots=True)
class _Entry:
    partition: int
    history: History
    covered_from: datetime
    size: int


class HistoryCache:
    def __init__(self, *, max_readings: int) -> None:
        self.max_readings = max_readings
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._marks: dict[int, int] = {}  # partition -> the watermark the entries are right for
        self._size = 0
        self.loads = 0  # entries (re)loaded from the database, for the engine's stats

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def readings(self) -> int:
        return self._size

    def clear(self) -> None:
        self._entries.clear()
        self._marks.clear()
        self._size = 0

    def begin(self, marks: Mapping[int, int]) -> None:
        """A page starts with the owned partitions' watermarks ``marks`` (as stored, in the page's
        transaction): drop what they no longer vouch for; nothing is vouched for until :meth:`commit`."""
        held = {e.partition for e in self._entries.values()}
        stale = {p for p in held if p not in marks or self._marks.get(p) != marks[p]}
        if stale:
            for pid in [pid for pid, e in self._entries.items() if e.partition in stale]:
                self._drop(pid)
        self._marks = {}

    def commit(self, marks: Mapping[int, int]) -> None:
        """The page's transaction committed and the partitions' watermarks are now ``marks``."""
        self._marks = dict(marks)

    def get(self, patient_id: str, need_from: datetime) -> History | None:
        """The patient's history when it covers ``need_from`` on, else None (load it)."""
        e = self._entries.get(patient_id)
        if e is None or e.covered_from > need_from:
            return None
        self._entries.move_to_end(patient_id)
        return e.history

    def put(self, patient_id: str, partition: int, history: History, covered_from: datetime) -> None:
        """A history loaded from the database (see the module docstring for what it must hold)."""
        self._drop(patient_id)
        size = history.count()
        self._entries[patient_id] = _Entry(partition, history, covered_from, size)
        self._size += size
        self.loads += 1

    def add(self, patient_id: str, observations: Iterable[Obs]) -> None:
        """Readings of a page, for a patient that has an entry (others are loaded when needed)."""
        e = self._entries.get(patient_id)
        if e is None:
            return
        fresh = [o for o in observations if o.time >= e.covered_from]
        e.history.extend(fresh)
        e.size += len(fresh)
        self._size += len(fresh)

    def trim(self, patient_id: str, keep_from: datetime) -> None:
        """The patient's evaluations need nothing before ``keep_from`` any more."""
        e = self._entries.get(patient_id)
        if e is None or e.covered_from >= keep_from - 2 * _SLACK:
            return
        cut = keep_from - _SLACK
        e.history.prune(cut)
        e.covered_from = cut
        size = e.history.count()
        self._size -= e.size - size
        e.size = size

    def bound(self, keep: Iterable[str] = ()) -> None:
        """Drop the least recently used patients (never those in ``keep``) beyond ``max_readings``."""
        spare = set(keep)
        while self._size > self.max_readings:
            victim = next((pid for pid in self._entries if pid not in spare), None)
            if victim is None:
                return
            self._drop(victim)

    def _drop(self, patient_id: str) -> None:
        e = self._entries.pop(patient_id, None)
        if e is not None:
            self._size -= e.size

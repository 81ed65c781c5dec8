"""A patient's readings per metric in time order, and the windows the rules ask of them.

Pure and in memory: the engine fills one from a windowed database query, the replay grows one as
it reads the CSV. Every query takes the evaluation time ``at`` and never looks past it, so a rule
evaluated "as of" a reading cannot see a later one even when the history holds it.

Besides the readings, each metric keeps its times and values as plain lists (:meth:`series`), and
per-reading facts the rules derive from them (:meth:`derived`: a reading's NEWS2 sub-score, whether a
weighing is plausible) are computed once per reading and kept while readings are only appended:
every evaluation of a page, or of the replay, reuses them instead of deriving them again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Final, TypeVar

from alerts.model import Obs

__all__ = ["History"]

_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T")
_NO_REACH: Final = timedelta(0)


@dataclass(slots=True)
class _Facts:
    facts: list[Any]
    fact: Callable[[Any, list[datetime], list[float], int], Any]
    reach: timedelta


_TIME = attrgetter("time")


class History:
    def __init__(self, observations: Iterable[Obs] = ()) -> None:
        self._obs: dict[str, list[Obs]] = {}
        self._times: dict[str, list[datetime]] = {}
        self._values: dict[str, list[float]] = {}
        # (metric, key) -> the facts derived for a prefix of the metric's readings (see derived).
        self._derived: dict[tuple[str, Hashable], _Facts] = {}
        for o in sorted(observations):
            self.add(o)

    def add(self, o: Obs) -> None:
        obs = self._obs.setdefault(o.metric, [])
        times = self._times.setdefault(o.metric, [])
        values = self._values.setdefault(o.metric, [])
        if not times or o.time >= times[-1]:
            obs.append(o)
            times.append(o.time)
            values.append(o.value)
        else:  # late arrival: keep the order
            i = bisect_right(times, o.time)
            obs.insert(i, o)
            times.insert(i, o.time)
            values.insert(i, o.value)
            self._changed_from(o.metric, i)

    def extend(self, observations: Iterable[Obs]) -> None:
        """Add many readings at once: the same history as :meth:`add` of each in turn (readings with
        equal times keep the order given, after those already held), in one stable sort per metric
        instead of one list insertion per reading (a database window arrives newest first, which
        made every :meth:`add` an insertion at the front)."""
        fresh: dict[str, list[Obs]] = {}
        for o in observations:
            fresh.setdefault(o.metric, []).append(o)
        for metric, new in fresh.items():
            new.sort(key=_TIME)
            held = self._obs.get(metric)
            if held and new[0].time >= held[-1].time:
                # Only newer readings (a feed page): appended, the derived facts stay right.
                held.extend(new)
                self._times[metric].extend(o.time for o in new)
                self._values[metric].extend(o.value for o in new)
                continue
            # Readings before the first new one keep their places (equal times: the held ones first).
            first = bisect_right(self._times[metric], new[0].time) if held else 0
            merged = sorted((held or []) + new, key=_TIME)
            self._obs[metric] = merged
            self._times[metric] = [o.time for o in merged]
            self._values[metric] = [o.value for o in merged]
            self._changed_from(metric, first)

    def metrics(self) -> frozenset[str]:
        return frozenset(m for m, obs in self._obs.items() if obs)

    def all(self, metric: str) -> Sequence[Obs]:
        return self._obs.get(metric, [])

    def count(self) -> int:
        return sum(len(v) for v in self._obs.values())

    def series(self, metric: str) -> tuple[list[datetime], list[float], list[Obs]]:
        """The metric's times, values and readings, in time order (the lists themselves: read only)."""
        times = self._times.get(metric)
        if times is None:
            return [], [], []
        return times, self._values[metric], self._obs[metric]

    def times(self, metric: str) -> Sequence[datetime]:
        """The metric's reading times, in order (the list itself: read only)."""
        return self._times.get(metric, ())

    def derived(
        self,
        metric: str,
        key: _K,
        fact: Callable[[_K, list[datetime], list[float], int], _T],
        reach: timedelta = _NO_REACH,
    ) -> list[_T]:
        """``fact(key, times, values, i)`` for every reading ``i`` of ``metric`` (indexes and lists as
        in :meth:`series`), kept under ``key``. ``fact`` of a reading may look only at that reading
        and the earlier ones taken less than ``reach`` before it: a reading added before others
        makes the facts of those after it be derived again, pruning those of the readings less
        than ``reach`` after the cut."""
        held = self._derived.get((metric, key))
        if held is None:
            held = self._derived[(metric, key)] = _Facts([], fact, reach)
        have: list[_T] = held.facts
        times = self._times.get(metric)
        if times is not None and len(have) < len(times):
            values = self._values[metric]
            have.extend(fact(key, times, values, i) for i in range(len(have), len(times)))
        return have

    def _changed_from(self, metric: str, first: int) -> None:
        """The readings of ``metric`` from index ``first`` on changed: their facts are stale."""
        for (m, _), held in self._derived.items():
            if m == metric:
                del held.facts[first:]

    def _pruned(self, metric: str, cut: int, before: datetime) -> None:
        """The first ``cut`` readings of ``metric`` (those before ``before``) were forgotten."""
        times, values = self._times[metric], self._values[metric]
        for (m, key), held in self._derived.items():
            if m != metric:
                continue
            facts = held.facts
            del facts[:cut]
            # Those within ``reach`` of the cut may have looked at a forgotten reading.
            for k in range(min(bisect_left(times, before + held.reach), len(facts))):
                facts[k] = held.fact(key, times, values, k)

    def _upto_index(self, metric: str, at: datetime) -> int:
        return bisect_right(self._times.get(metric, []), at)

    def latest(self, metric: str, at: datetime) -> Obs | None:
        """The most recent reading at or before ``at``."""
        i = self._upto_index(metric, at)
        return self._obs[metric][i - 1] if i else None

    def last(self, metric: str, at: datetime, n: int) -> list[Obs]:
        """Up to ``n`` most recent readings at or before ``at``, oldest first."""
        i = self._upto_index(metric, at)
        return self._obs[metric][max(0, i - n) : i] if i else []

    def window(self, metric: str, start: datetime, end: datetime) -> list[Obs]:
        """Readings with ``start < time <= end``, oldest first."""
        times = self._times.get(metric)
        if not times:
            return []
        return self._obs[metric][bisect_right(times, start) : bisect_right(times, end)]

    def before(self, metric: str, at: datetime) -> list[Obs]:
        """All readings strictly before ``at`` (for training), oldest first."""
        times = self._times.get(metric)
        if not times:
            return []
        return self._obs[metric][: bisect_left(times, at)]

    def prune(self, before: datetime) -> None:
        """Forget readings older than ``before`` (bounds the replay's memory)."""
        for metric, times in self._times.items():
            cut = bisect_left(times, before)
            if cut:
                del times[:cut]
                del self._obs[metric][:cut]
                del self._values[metric][:cut]
                self._pruned(metric, cut, before)

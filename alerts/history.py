"""A patient's readings per metric in time order, and the windows the rules ask of them.

Pure and in memory: the engine fills one from a windowed database query, the replay grows one as
it reads the CSV. Every query takes the evaluation time ``at`` and never looks past it, so a rule
evaluated "as of" a reading cannot see a later one even when the history holds it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import attrgetter

from alerts.model import Obs

__all__ = ["History"]

_TIME = attrgetter("time")


class History:
    def __init__(self, observations: Iterable[Obs] = ()) -> None:
        self._obs: dict[str, list[Obs]] = {}
        self._times: dict[str, list[datetime]] = {}
        for o in sorted(observations):
            self.add(o)

    def add(self, o: Obs) -> None:
        obs = self._obs.setdefault(o.metric, [])
        times = self._times.setdefault(o.metric, [])
        if not times or o.time >= times[-1]:
            obs.append(o)
            times.append(o.time)
        else:  # late arrival: keep the order
            i = bisect_right(times, o.time)
            obs.insert(i, o)
            times.insert(i, o.time)

    def extend(self, observations: Iterable[Obs]) -> None:
        """Add many readings at once: the same history as :meth:`add` of each in turn (readings with
        equal times keep the order given, after those already held), in one stable sort per metric
        instead of one list insertion per reading (a database window arrives newest first, which
        made every :meth:`add` an insertion at the front)."""
        fresh: dict[str, list[Obs]] = {}
        for o in observations:
            fresh.setdefault(o.metric, []).append(o)
        for metric, new in fresh.items():
            merged = sorted(self._obs.get(metric, []) + new, key=_TIME)
            self._obs[metric] = merged
            self._times[metric] = [o.time for o in merged]

    def metrics(self) -> frozenset[str]:
        return frozenset(m for m, obs in self._obs.items() if obs)

    def all(self, metric: str) -> Sequence[Obs]:
        return self._obs.get(metric, [])

    def count(self) -> int:
        return sum(len(v) for v in self._obs.values())

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

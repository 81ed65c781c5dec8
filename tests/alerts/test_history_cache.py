"""The engine's history cache: what it vouches for, and when it stops vouching."""

from __future__ import annotations

from datetime import timedelta

from alerts.history import History
from alerts.history_cache import HistoryCache
from alerts.model import Obs
from tests.alerts.helpers import at


def loaded(*hours: float) -> History:
    return History(Obs(at(h), "spo2", 97.0) for h in hours)


def test_an_entry_serves_evaluations_within_what_it_covers_and_grows_with_the_feed() -> None:
    cache = HistoryCache(max_readings=1000)
    cache.begin({0: 10})
    cache.put("p1", 0, loaded(0, 1), covered_from=at(-1))
    cache.commit({0: 20})
    cache.begin({0: 20})
    assert cache.get("p1", at(-2)) is None  # needs more than was loaded: load again
    h = cache.get("p1", at(-1))
    assert h is not None
    cache.add("p1", [Obs(at(2), "spo2", 96.0), Obs(at(-3), "spo2", 90.0)])
    # The reading before the covered time is not taken: the entry does not claim that time.
    assert [o.time for o in h.all("spo2")] == [at(0), at(1), at(2)]
    assert cache.readings == 3
    cache.add("p2", [Obs(at(2), "spo2", 96.0)])  # no entry: nothing to grow
    assert len(cache) == 1


def test_a_watermark_moved_by_someone_else_drops_that_partitions_entries() -> None:
    cache = HistoryCache(max_readings=1000)
    cache.begin({0: 10, 1: 10})
    cache.put("p0", 0, loaded(0), covered_from=at(-1))
    cache.put("p1", 1, loaded(0), covered_from=at(-1))
    cache.commit({0: 20, 1: 20})
    cache.begin({0: 20, 1: 35})  # another worker consumed partition 1 meanwhile
    assert cache.get("p0", at(0)) is not None
    assert cache.get("p1", at(0)) is None
    assert cache.readings == 1


def test_a_partition_no_longer_owned_is_dropped() -> None:
    cache = HistoryCache(max_readings=1000)
    cache.begin({0: 10, 1: 10})
    cache.put("p0", 0, loaded(0), covered_from=at(-1))
    cache.put("p1", 1, loaded(0), covered_from=at(-1))
    cache.commit({0: 20, 1: 20})
    cache.begin({0: 20})
    assert cache.get("p1", at(0)) is None
    assert cache.get("p0", at(0)) is not None


def test_a_page_that_did_not_commit_leaves_nothing_vouched_for() -> None:
    cache = HistoryCache(max_readings=1000)
    cache.begin({0: 10})
    cache.put("p0", 0, loaded(0), covered_from=at(-1))
    cache.commit({0: 20})
    cache.begin({0: 20})
    cache.add("p0", [Obs(at(1), "spo2", 96.0)])  # this page's transaction then rolls back
    cache.begin({0: 20})  # the same page again: its readings must not count twice
    assert cache.get("p0", at(0)) is None
    assert cache.readings == 0


def test_trim_forgets_what_no_evaluation_needs_and_narrows_the_cover() -> None:
    cache = HistoryCache(max_readings=1000)
    cache.begin({0: 1})
    cache.put("p0", 0, loaded(*range(0, 24 * 10, 12)), covered_from=at(-1))
    cache.trim("p0", at(days=1))  # within the slack: nothing to do yet
    assert cache.readings == 20
    cache.trim("p0", at(days=5))
    assert cache.get("p0", at(days=4)) is not None
    assert cache.get("p0", at(days=4) - timedelta(microseconds=1)) is None
    assert cache.readings == 12  # days 4 to 9.5, twice a day


def test_the_least_recently_used_patients_go_first_and_the_pages_own_stay() -> None:
    cache = HistoryCache(max_readings=4)
    cache.begin({0: 1})
    for pid in ("a", "b", "c"):
        cache.put(pid, 0, loaded(0, 1), covered_from=at(-1))
    cache.get("a", at(0))
    cache.bound(keep={"c"})
    assert cache.get("b", at(0)) is None
    assert cache.get("a", at(0)) is not None
    assert cache.readings == 4
    cache.bound(keep={"a", "c"})  # nothing else to drop: over the bound only by the page's own
    assert len(cache) == 2

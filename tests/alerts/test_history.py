"""History.extend builds exactly the history that adding each reading in turn builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from alerts.history import History
from alerts.model import Obs

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Few distinct times and values so that equal times (the hostile case for ordering) are common.
obs = st.builds(
    Obs,
    time=st.integers(0, 6).map(lambda h: T0 + timedelta(hours=h)),
    metric=st.sampled_from(["spo2", "heart_rate", "body_weight"]),
    value=st.integers(0, 3).map(float),
)


def _state(h: History) -> dict[str, list[Obs]]:
    return {m: list(h.all(m)) for m in sorted(h.metrics())}


@given(held=st.lists(obs, max_size=12), new=st.lists(obs, max_size=30))
def test_extend_equals_one_add_per_reading(held: list[Obs], new: list[Obs]) -> None:
    one_by_one, at_once = History(), History()
    for o in held:
        one_by_one.add(o)
        at_once.add(o)
    for o in new:
        one_by_one.add(o)
    at_once.extend(new)
    assert _state(at_once) == _state(one_by_one)
    for m in ("spo2", "heart_rate", "body_weight"):
        for h in range(8):
            at = T0 + timedelta(hours=h)
            assert at_once.last(m, at, 3) == one_by_one.last(m, at, 3)
            assert at_once.window(m, at - timedelta(hours=3), at) == one_by_one.window(m, at - timedelta(hours=3), at)


def test_extend_newest_first_keeps_given_order_of_equal_times() -> None:
    """A database window arrives newest first; readings sharing a time stay in the order given."""
    a, b = Obs(T0, "spo2", 97.0), Obs(T0, "spo2", 95.0)
    later = Obs(T0 + timedelta(minutes=1), "spo2", 96.0)
    h = History()
    h.extend([later, a, b])
    assert list(h.all("spo2")) == [a, b, later]
    assert h.latest("spo2", T0) == b


def test_extend_nothing_changes_nothing() -> None:
    h = History([Obs(T0, "spo2", 97.0)])
    h.extend([])
    assert list(h.all("spo2")) == [Obs(T0, "spo2", 97.0)]
    assert h.metrics() == frozenset({"spo2"})

"""The takeover rule: sessions accepted and then cut within seconds, several in a row."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm_core.takeover import TakeoverDetector


def cut_after(d: TakeoverDetector, at: float, lasted: float) -> bool:
    d.accepted(at)
    return d.ended(at + lasted, cut=True)


def test_three_short_cuts_in_a_row_are_a_takeover_and_the_count_starts_again() -> None:
    d = TakeoverDetector(threshold=3, short_s=30, window_s=180)
    assert not cut_after(d, 0, 1)
    assert not cut_after(d, 2, 1)
    assert cut_after(d, 4, 1)
    assert not cut_after(d, 6, 1)  # counted afresh


@pytest.mark.parametrize(
    "interruption",
    ["long session", "disconnect with a reason", "refused attempt", "said by the broker"],
)
def test_anything_else_between_cuts_starts_the_count_again(interruption: str) -> None:
    d = TakeoverDetector(threshold=3, short_s=30, window_s=180)
    assert not cut_after(d, 0, 1)
    assert not cut_after(d, 2, 1)
    if interruption == "long session":
        assert not cut_after(d, 4, 31)  # a network drop after a while
    elif interruption == "disconnect with a reason":
        d.accepted(4)
        assert not d.ended(5, cut=False)
    elif interruption == "refused attempt":
        d.failed()
    else:
        assert d.taken_over()
    assert not cut_after(d, 40, 1)
    assert not cut_after(d, 42, 1)
    assert cut_after(d, 44, 1)


def test_cuts_spread_wider_than_the_window_are_not_a_takeover() -> None:
    d = TakeoverDetector(threshold=3, short_s=30, window_s=60)
    assert not cut_after(d, 0, 1)
    assert not cut_after(d, 50, 1)
    assert not cut_after(d, 100, 1)  # the first cut has left the window
    assert cut_after(d, 105, 1)


def test_an_ending_without_an_accepted_session_counts_nothing() -> None:
    d = TakeoverDetector(threshold=2)
    assert not d.ended(1, cut=True)
    assert not d.ended(2, cut=True)


def test_nonsense_parameters_are_refused() -> None:
    for kwargs in ({"threshold": 1}, {"short_s": 0}, {"short_s": 10, "window_s": 5}):
        with pytest.raises(ValueError):
            TakeoverDetector(**kwargs)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 60), st.booleans()), max_size=40))
def test_never_fires_without_threshold_short_cuts_in_a_row(sessions: list[tuple[float, float, bool]]) -> None:
    d = TakeoverDetector(threshold=3, short_s=30, window_s=180)
    now, run = 0.0, 0
    for gap, lasted, cut in sessions:
        now += gap
        d.accepted(now)
        now += lasted
        fired = d.ended(now, cut=cut)
        run = run + 1 if cut and lasted <= 30 else 0
        if fired:
            assert run >= 3
            run = 0

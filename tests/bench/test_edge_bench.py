"""The pure parts of ``bench.edge_agent --hours``: the accelerated clock, the RSS figures, and the
receipting stand-in's bookkeeping (it must receipt exactly what it holds, holes and gaps included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.edge_accel import AcceleratedClock
from bench.edge_hours import rss_figures
from bench.edge_receipts import AgentTally
from rpm_core.clock import Clock
from rpm_core.keys import AgentKeys

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class FakeReal:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_accelerated_clock_runs_speed_times_faster_in_both_readings() -> None:
    real = FakeReal()
    clock = AcceleratedClock(60, start=START, real=real)
    assert isinstance(clock, Clock)
    assert clock.now() == START
    assert clock.monotonic() == 0
    real.t += 90  # a minute and a half of real time
    assert clock.now() == START + timedelta(hours=1, minutes=30)
    assert clock.monotonic() == 5400


def test_accelerated_clock_refuses_a_naive_start_and_a_stopped_clock() -> None:
    with pytest.raises(ValueError, match="naive"):
        AcceleratedClock(60, start=datetime(2026, 3, 1))  # naive: the point of the test
    with pytest.raises(ValueError, match="speed"):
        AcceleratedClock(0)


def test_rss_figures_flat_memory_has_no_growth() -> None:
    samples = [(h / 10, 40.0) for h in range(241)]
    figures = rss_figures(samples)
    assert figures == {"rss_mb_start": 40.0, "rss_mb_end": 40.0, "rss_growth_mb": 0.0, "rss_slope_mb_per_24h": 0.0}


def test_rss_figures_see_a_leak_and_ignore_the_warm_up() -> None:
    # Warm-up: 30 MB -> 40 MB in the first hour; then a leak of 0.5 MB per hour for 23 hours.
    samples = [(h / 10, 30.0 + h) for h in range(10)]
    samples += [(h / 10, 40.0 + 0.5 * (h / 10 - 1)) for h in range(10, 241)]
    figures = rss_figures(samples)
    assert figures["rss_slope_mb_per_24h"] == pytest.approx(12.0)
    assert figures["rss_growth_mb"] is not None
    assert 8.0 < figures["rss_growth_mb"] < 11.0
    assert rss_figures(samples[:5])["rss_growth_mb"] is None  # too few samples to say


def test_tally_receipts_only_the_contiguous_prefix_and_counts_duplicates() -> None:
    tally = AgentTally(AgentKeys.generate().public())
    tally.add(1, 3)
    tally.add(6, 8)  # a hole at 4-5
    assert tally.through == 3
    tally.add(2, 2)
    assert tally.duplicates == 1
    tally.add(4, 5, gap=True)  # declared lost by the agent: resolved, but no reading
    assert tally.through == 8
    assert tally.readings == 6
    assert tally.above == set()

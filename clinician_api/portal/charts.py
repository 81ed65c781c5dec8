"""The geometry of a week's chart for the portal, drawn as SVG on the server (pure).

No script draws it, so it shows with script off, under the CSP, and on an old phone; the page
gives it a text equivalent (the week's sentence and a table of daily numbers), so the picture is
never the only way to the facts. Colours come from classes in ``portal.css``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from clinician_api.portal.wording import TargetRange, number

__all__ = ["ChartLine", "Mark", "WeekChart", "week_chart"]

WIDTH: Final = 340
HEIGHT: Final = 190
_LEFT: Final = 44
_RIGHT: Final = 8
_TOP: Final = 10
_BOTTOM: Final = 30


@dataclass(frozen=True, slots=True)
class ChartLine:
    metric: str
    points: str  # the polyline's ``points``
    dots: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Mark:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class WeekChart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    lines: list[ChartLine]
    band: tuple[float, float] | None  # (y of the top, y of the bottom) of the shaded target range
    goals: list[Mark] = field(default_factory=list)  # dashed target lines (y, label)
    y_ticks: list[Mark] = field(default_factory=list)
    x_ticks: list[Mark] = field(default_factory=list)  # day names, at each local noon
    x_lines: list[float] = field(default_factory=list)  # local midnights


def _bounds(rng: TargetRange | None) -> list[float]:
    if rng is None:
        return []
    return [v for v in (rng.low, rng.high) if v is not None]


def week_chart(
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    ranges: Mapping[str, TargetRange | None],
    *,
    start: datetime,
    end: datetime,
    zone: str,
) -> WeekChart | None:
    """A chart of ``series`` (metric -> (hour, mean)) over [start, end); None without points.
    One metric gets its target range shaded; several (blood pressure) get a dashed line at each
    upper target."""
    values = [v for pts in series.values() for _, v in pts]
    if not values:
        return None
    single = len(series) == 1
    limits = [b for m in series for b in _bounds(ranges.get(m))]
    lo, hi = min(values + limits), max(values + limits)
    pad = max((hi - lo) * 0.08, abs(hi) * 0.01, 0.5)
    lo, hi = lo - pad, hi + pad
    right, bottom = WIDTH - _RIGHT, HEIGHT - _BOTTOM
    span_t = (end - start).total_seconds()

    def x(t: datetime) -> float:
        return round(_LEFT + (t - start).total_seconds() / span_t * (right - _LEFT), 1)

    def y(v: float) -> float:
        return round(bottom - (v - lo) / (hi - lo) * (bottom - _TOP), 1)

    lines = []
    for metric, pts in series.items():
        dots = [(x(t), y(v)) for t, v in pts]
        lines.append(ChartLine(metric, " ".join(f"{a},{b}" for a, b in dots), dots))
    band = None
    goals: list[Mark] = []
    if single:
        metric = next(iter(series))
        rng = ranges.get(metric)
        if rng is not None:
            band = (y(rng.high) if rng.high is not None else _TOP, y(rng.low) if rng.low is not None else bottom)
    else:
        for metric in series:
            rng = ranges.get(metric)
            if rng is not None and rng.high is not None:
                goals.append(Mark(y(rng.high), number(metric, rng.high)))
    first_metric = next(iter(series))
    y_ticks = [Mark(y(v), number(first_metric, v)) for v in (lo + pad, (lo + hi) / 2, hi - pad)]
    local = ZoneInfo(zone)
    day = start.astimezone(local).replace(hour=0, minute=0, second=0, microsecond=0)
    x_ticks: list[Mark] = []
    x_lines: list[float] = []
    while day < end:
        noon = day.replace(hour=12)
        if start <= noon < end:
            x_ticks.append(Mark(x(noon), f"{day:%a}"))
        if day > start:
            x_lines.append(x(day))
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)  # across a clock change
    return WeekChart(WIDTH, HEIGHT, _LEFT, right, _TOP, bottom, lines, band, goals, y_ticks, x_ticks, x_lines)

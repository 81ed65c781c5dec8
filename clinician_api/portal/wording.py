"""Plain-language wording for the patient portal (pure: no I/O).

A patient's *target range* for a metric is where none of their alert bands fires: the bands in
force for them (organisation defaults with their own overrides, :class:`alerts.config.PatientConfig`)
and, for blood pressure, their home goal (ACC/AHA: below 130/80 at home unless their clinician set
another). A band ``value <= 94`` means "alert at 94 or below", so the range starts *above* 94; a band
``value < 70`` means the range starts *at* 70.

A week's verdict is taken over hourly averages of the last seven days: an hour is in range when the
average of every metric of the topic measured in that hour is in its range (blood pressure: both
the upper and the lower number). "Mostly" means at least three hours in four.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from alerts.config import PatientConfig

__all__ = [
    "PROFILE_NAMES",
    "TOPICS",
    "Battery",
    "Heard",
    "HourValues",
    "TargetRange",
    "Topic",
    "WeekVerdict",
    "ago",
    "battery",
    "day_words",
    "heard",
    "number",
    "target_range",
    "unit_of",
    "value_words",
    "week_verdict",
]


@dataclass(frozen=True, slots=True)
class Topic:
    """What a patient measures, as they would name it: one metric, or two (blood pressure)."""

    key: str
    name: str  # lower case, for "Your {name} this week"
    title: str  # a heading
    metrics: tuple[str, ...]


TOPICS: Final = (
    Topic("blood_pressure", "blood pressure", "Blood pressure", ("bp_systolic", "bp_diastolic")),
    Topic("spo2", "oxygen level", "Oxygen level", ("spo2",)),
    Topic("heart_rate", "pulse", "Pulse", ("heart_rate",)),
    Topic("body_weight", "weight", "Weight", ("body_weight",)),
    Topic("body_temperature", "temperature", "Temperature", ("body_temperature",)),
    Topic("glucose", "blood sugar", "Blood sugar", ("glucose",)),
    Topic("respiratory_rate", "breathing rate", "Breathing rate", ("respiratory_rate",)),
)

# Units as a patient reads them (the catalogue's are UCUM codes).
_UNITS: Final = {
    "bp_systolic": "mmHg",
    "bp_diastolic": "mmHg",
    "spo2": "%",
    "heart_rate": "beats a minute",
    "body_weight": "kg",
    "body_temperature": "°C",
    "glucose": "mg/dL",
    "respiratory_rate": "breaths a minute",
}
_DECIMALS: Final = {"body_weight": 1, "body_temperature": 1}

# Bluetooth profiles (edge_agent.settings.ProfileName) as a patient names the device.
PROFILE_NAMES: Final = {
    "blood_pressure": "Blood pressure monitor",
    "pulse_oximeter": "Finger pulse oximeter",
    "heart_rate": "Heart rate monitor",
    "thermometer": "Thermometer",
    "weight_scale": "Scale",
    "glucose": "Blood sugar meter",
}


def unit_of(metric: str) -> str:
    return _UNITS.get(metric, "")


def number(metric: str, value: float) -> str:
    decimals = _DECIMALS.get(metric, 0)
    text = f"{value:.{decimals}f}"
    return "0" if text in {"-0", "-0.0"} else text


def value_words(topic: Topic, values: Mapping[str, float]) -> str:
    """``128/79 mmHg`` for blood pressure, ``96 %`` or ``72 beats a minute`` otherwise; the
    metrics of ``topic`` missing from ``values`` are left out."""
    present = [m for m in topic.metrics if m in values]
    if not present:
        return ""
    unit = unit_of(present[0])
    text = "/".join(number(m, values[m]) for m in present)
    return f"{text} {unit}".strip() if unit != "%" else f"{text} %"


@dataclass(frozen=True, slots=True)
class TargetRange:
    """In range: above ``low`` (at ``low`` too unless ``low_open``) and below ``high`` (at ``high``
    too unless ``high_open``); a missing end is unbounded."""

    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False

    def contains(self, v: float) -> bool:
        return self.side(v) == "in"

    def side(self, v: float) -> Literal["below", "in", "above"]:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return "below"
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            return "above"
        return "in"

    def words(self, metric: str) -> str:
        """``above 94 %``, ``70 mg/dL or more``, ``below 130 mmHg``, ``above 40 and below 111 beats
        a minute``."""
        unit = unit_of(metric)
        parts = []
        if self.low is not None:
            n = number(metric, self.low)
            parts.append(f"above {n}" if self.low_open else f"{n} or more")
        if self.high is not None:
            n = number(metric, self.high)
            parts.append(f"below {n}" if self.high_open else f"{n} or less")
        if not parts:
            return "any value"
        text = " and ".join(parts)
        return f"{text} {unit}".strip() if unit != "%" else f"{text} %"


def _tighter_low(cur: tuple[float, bool] | None, new: tuple[float, bool]) -> tuple[float, bool]:
    if cur is None or new[0] > cur[0] or (new[0] == cur[0] and new[1]):
        return new
    return cur


def _tighter_high(cur: tuple[float, bool] | None, new: tuple[float, bool]) -> tuple[float, bool]:
    if cur is None or new[0] < cur[0] or (new[0] == cur[0] and new[1]):
        return new
    return cur


def target_range(config: PatientConfig, metric: str) -> TargetRange | None:
    """Where no alert band of ``metric`` fires for this patient (None: no band, no range)."""
    low: tuple[float, bool] | None = None
    high: tuple[float, bool] | None = None
    for band in config.bands.get(metric, ()):
        if band.op in ("<", "<="):  # alert at or below: the range starts above
            low = _tighter_low(low, (band.value, band.op == "<="))
        else:
            high = _tighter_high(high, (band.value, band.op == ">="))
    goal = config.trend.bp_goal
    if metric == "bp_systolic":
        high = _tighter_high(high, (goal.systolic, True))
    elif metric == "bp_diastolic":
        high = _tighter_high(high, (goal.diastolic, True))
    if low is None and high is None:
        return None
    return TargetRange(
        low=low[0] if low else None,
        low_open=low[1] if low else False,
        high=high[0] if high else None,
        high_open=high[1] if high else False,
    )


@dataclass(frozen=True, slots=True)
class HourValues:
    """The averages of one hour: metric -> (mean, readings)."""

    start: datetime
    values: Mapping[str, tuple[float, int]]


@dataclass(frozen=True, slots=True)
class WeekVerdict:
    sentence: str  # "Your blood pressure this week: mostly in your target range."
    tone: str  # 'good' | 'attention' | 'none'
    readings: int
    hours: int
    in_range: int
    above: int
    below: int
    average: dict[str, float]


Tone = Literal["good", "attention", "none"]


def _average(hours: Sequence[HourValues]) -> dict[str, float]:
    totals: dict[str, tuple[float, int]] = {}
    for h in hours:
        for m, (mean, n) in h.values.items():
            s, c = totals.get(m, (0.0, 0))
            totals[m] = (s + mean * n, c + n)
    return {m: s / c for m, (s, c) in totals.items() if c}


def _sides(topic: Topic, ranges: Mapping[str, TargetRange | None], hours: Sequence[HourValues]) -> tuple[int, int, int]:
    """(hours in range, hours above, hours below); an hour with any metric above counts above."""
    in_range = above = below = 0
    for h in hours:
        sides = {rng.side(mean) for m, (mean, _) in h.values.items() if m in topic.metrics and (rng := ranges.get(m))}
        if "above" in sides:
            above += 1
        elif "below" in sides:
            below += 1
        else:
            in_range += 1
    return in_range, above, below


def _words(in_range: int, above: int, below: int) -> tuple[str, Tone]:
    share = in_range / (in_range + above + below)
    direction = "higher" if above >= below else "lower"
    if share == 1:
        return "always in your target range", "good"
    if share >= 0.75:
        return "mostly in your target range", "good"
    if share >= 0.4:
        return f"sometimes outside your target range (usually {direction})", "attention"
    return f"mostly outside your target range ({direction} than your target)", "attention"


def week_verdict(topic: Topic, ranges: Mapping[str, TargetRange | None], hours: Sequence[HourValues]) -> WeekVerdict:
    """The week in one sentence; ``hours`` are the hourly averages of the last 7 days."""
    if not hours:
        return WeekVerdict(f"Your {topic.name} this week: no readings yet.", "none", 0, 0, 0, 0, 0, {})
    first = topic.metrics[0]
    readings = sum(h.values[first][1] for h in hours if first in h.values) or sum(
        n for h in hours for _, n in h.values.values()
    )
    average = _average(hours)
    if all(ranges.get(m) is None for m in topic.metrics):
        plural = "reading" if readings == 1 else "readings"
        sentence = f"Your {topic.name} this week: {value_words(topic, average)} on average, from {readings} {plural}."
        return WeekVerdict(sentence, "none", readings, len(hours), 0, 0, 0, average)
    in_range, above, below = _sides(topic, ranges, hours)
    words, tone = _words(in_range, above, below)
    sentence = f"Your {topic.name} this week: {words}."
    return WeekVerdict(sentence, tone, readings, in_range + above + below, in_range, above, below, average)


def ago(t: datetime, now: datetime) -> str:
    """``just now``, ``5 minutes ago``, ``2 hours ago``, ``yesterday``, ``3 days ago``."""
    seconds = (now - t).total_seconds()
    if seconds < 90:
        return "just now"
    if seconds < 3600:
        n = round(seconds / 60)
        return f"{n} minutes ago"
    if seconds < 86400:
        n = int(seconds // 3600)
        return f"{n} hour{'s' if n != 1 else ''} ago"
    n = int(seconds // 86400)
    return "yesterday" if n == 1 else f"{n} days ago"


def day_words(t: datetime, zone: str, *, with_time: bool = False) -> str:
    """``Sunday 1 March 2026`` (``, 14:05`` with the time) in the organisation's time zone."""
    local = t.astimezone(ZoneInfo(zone))
    text = f"{local:%A} {local.day} {local:%B %Y}"
    return f"{text}, {local:%H:%M}" if with_time else text


@dataclass(frozen=True, slots=True)
class Battery:
    words: str
    ok: bool


def battery(pct: int | None) -> Battery:
    if pct is None:
        return Battery("Battery level not reported", True)
    if pct >= 50:
        return Battery(f"Battery good ({pct} %)", True)
    if pct >= 20:
        return Battery(f"Battery getting low ({pct} %)", True)
    return Battery(f"Battery low ({pct} %): please change or charge it", False)


@dataclass(frozen=True, slots=True)
class Heard:
    words: str
    ok: bool


QUIET_AFTER: Final = timedelta(hours=24)


def heard(last_seen: datetime | None, now: datetime) -> Heard:
    """When the device (or the home hub) was last heard from, and whether that is recent enough."""
    if last_seen is None:
        return Heard("Not heard from yet", False)
    if now - last_seen <= QUIET_AFTER:
        return Heard(f"Last heard from {ago(last_seen, now)}", True)
    days = max(1, math.floor((now - last_seen) / timedelta(days=1)))
    span = "a day" if days == 1 else f"{days} days"
    return Heard(f"Not heard from for {span}", False)

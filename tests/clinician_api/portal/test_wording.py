"""Plain words from numbers: target ranges from the patient's own alert settings, the week's
verdict at its edges, battery and "last heard from" wording, the chart's geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.config import PatientConfig, RulesConfig
from clinician_api.portal.charts import week_chart
from clinician_api.portal.wording import (
    TOPICS,
    HourValues,
    TargetRange,
    ago,
    battery,
    day_words,
    heard,
    target_range,
    value_words,
    week_verdict,
)

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BP = next(t for t in TOPICS if t.key == "blood_pressure")
SPO2 = next(t for t in TOPICS if t.key == "spo2")
WEIGHT = next(t for t in TOPICS if t.key == "body_weight")


def _config(settings: dict | None = None) -> PatientConfig:
    return PatientConfig.resolve(RulesConfig(), settings)


def test_default_targets_follow_the_alert_bands_and_the_home_bp_goal() -> None:
    config = _config()
    assert target_range(config, "spo2") == TargetRange(low=94, low_open=True)
    assert target_range(config, "spo2").words("spo2") == "above 94 %"
    assert target_range(config, "bp_systolic").words("bp_systolic") == "above 90 and below 130 mmHg"
    assert target_range(config, "bp_diastolic").words("bp_diastolic") == "below 80 mmHg"
    assert target_range(config, "heart_rate").words("heart_rate") == "above 40 and below 111 beats a minute"
    assert target_range(config, "glucose").words("glucose") == "70 or more and 180 or less mg/dL"
    assert target_range(config, "body_weight") is None  # no band: no range, the average instead


def test_the_patients_own_settings_move_their_targets() -> None:
    copd = _config({"spo2_scale": 2, "bp_goal": {"systolic": 140, "diastolic": 90}})
    assert target_range(copd, "spo2").words("spo2") == "above 87 %"
    assert target_range(copd, "bp_systolic").words("bp_systolic") == "above 90 and below 140 mmHg"
    own = _config({"thresholds": {"spo2": [{"op": "<", "value": 90, "severity": "high"}]}})
    assert target_range(own, "spo2") == TargetRange(low=90, low_open=False)


@pytest.mark.parametrize(
    ("value", "side"), [(90.0, "below"), (90.5, "in"), (129.9, "in"), (130.0, "above"), (131.0, "above")]
)
def test_range_edges_match_the_bands(value: float, side: str) -> None:
    assert target_range(_config(), "bp_systolic").side(value) == side


def _hours(*values: tuple[float, float]) -> list[HourValues]:
    return [
        HourValues(NOW - timedelta(hours=i + 1), {"bp_systolic": (s, 2), "bp_diastolic": (d, 2)})
        for i, (s, d) in enumerate(values)
    ]


def _bp(hours: list[HourValues]) -> str:
    config = _config()
    ranges = {m: target_range(config, m) for m in BP.metrics}
    return week_verdict(BP, ranges, hours).sentence


def test_week_verdict_words() -> None:
    good, high, low = (120.0, 75.0), (150.0, 75.0), (85.0, 60.0)
    assert _bp([]) == "Your blood pressure this week: no readings yet."
    assert _bp(_hours(*[good] * 4)) == "Your blood pressure this week: always in your target range."
    assert _bp(_hours(*[good] * 3, high)) == "Your blood pressure this week: mostly in your target range."
    assert _bp(_hours(*[good] * 2, high, high)) == (
        "Your blood pressure this week: sometimes outside your target range (usually higher)."
    )
    assert _bp(_hours(good, low, low, low)) == (
        "Your blood pressure this week: mostly outside your target range (lower than your target)."
    )
    # Either number out of range puts the hour out: the lower number alone too.
    assert _bp(_hours((120.0, 85.0))) == (
        "Your blood pressure this week: mostly outside your target range (higher than your target)."
    )


def test_a_topic_without_a_range_says_its_average() -> None:
    hours = [HourValues(NOW - timedelta(hours=h), {"body_weight": (80.0 + h, 1)}) for h in (1, 2)]
    verdict = week_verdict(WEIGHT, {"body_weight": None}, hours)
    assert verdict.sentence == "Your weight this week: 81.5 kg on average, from 2 readings."
    assert verdict.readings == 2


def test_values_battery_and_time_words() -> None:
    assert value_words(BP, {"bp_systolic": 128.4, "bp_diastolic": 79.6}) == "128/80 mmHg"
    assert value_words(SPO2, {"spo2": 96.0}) == "96 %"
    assert battery(None).words == "Battery level not reported"
    assert battery(64).ok
    assert battery(20).words == "Battery getting low (20 %)"
    assert not battery(19).ok
    assert heard(None, NOW).words == "Not heard from yet"
    assert heard(NOW - timedelta(hours=23), NOW).words == "Last heard from 23 hours ago"
    assert heard(NOW - timedelta(hours=25), NOW).words == "Not heard from for a day"
    assert not heard(NOW - timedelta(days=3, hours=1), NOW).ok
    assert ago(NOW - timedelta(seconds=30), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=5), NOW) == "5 minutes ago"
    assert ago(NOW - timedelta(days=1, hours=2), NOW) == "yesterday"
    assert day_words(NOW, "America/New_York", with_time=True) == "Sunday 1 March 2026, 03:00"


def test_chart_geometry() -> None:
    start, end = NOW - timedelta(days=7), NOW
    rng = TargetRange(low=94, low_open=True)
    chart = week_chart(
        {"spo2": [(start + timedelta(hours=12), 96.0), (end - timedelta(hours=1), 92.0)]},
        {"spo2": rng},
        start=start,
        end=end,
        zone="UTC",
    )
    assert chart is not None
    (line,) = chart.lines
    (x0, y0), (x1, y1) = line.dots
    assert chart.left < x0 < x1 <= chart.right
    assert y0 < y1  # 96 is drawn above 92
    top, bottom = chart.band
    assert top == chart.top  # no upper end: the band runs to the top
    assert top < y0 < bottom < y1  # 96 inside the green band, 92 below it
    assert [m.label for m in chart.x_ticks] == ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    assert len(chart.x_lines) == 7
    assert week_chart({}, {}, start=start, end=end, zone="UTC") is None
    two = week_chart(
        {"bp_systolic": [(start + timedelta(hours=1), 120.0)], "bp_diastolic": [(start + timedelta(hours=1), 75.0)]},
        {"bp_systolic": TargetRange(high=130, high_open=True), "bp_diastolic": TargetRange(high=80, high_open=True)},
        start=start,
        end=end,
        zone="UTC",
    )
    assert two is not None
    assert two.band is None
    assert [g.label for g in two.goals] == ["130", "80"]

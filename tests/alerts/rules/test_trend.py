from __future__ import annotations

from alerts.model import Kind, Severity
from alerts.rules.trend import BP_RULE, WEIGHT_RULE, evaluate_bp_goal, evaluate_weight_gain
from tests.alerts.helpers import at, config, history

DAY = 24.0


def weights(*values: float, start: float = 0.0) -> list[tuple[float, float]]:
    """One weighing a day at 07:00."""
    return [(start + i * DAY, v) for i, v in enumerate(values)]


def gain(points, cfg=None):
    h = history(("body_weight", points))
    return evaluate_weight_gain(h, at(points[-1][0]), cfg or config())


def test_stable_weight_is_clear() -> None:
    out = gain(weights(80.0, 80.2, 79.9, 80.1, 80.0))
    assert out.candidates == ()
    assert out.clear == {WEIGHT_RULE}


def test_one_day_gain_over_1_4_kg_confirmed_is_medium() -> None:
    out = gain(weights(80.0, 80.0, 80.0, 81.5, 81.6))
    (c,) = out.candidates
    assert (c.kind, c.metric, c.severity) == (Kind.TREND, "body_weight", Severity.MEDIUM)
    assert "1d" in c.detail["gains"]


def test_three_day_gain_over_2_kg_is_high() -> None:
    (c,) = gain(weights(80.0, 80.0, 80.7, 81.4, 82.1, 82.2)).candidates
    assert c.severity is Severity.HIGH
    assert "3d" in c.detail["gains"]


def test_seven_day_gain_over_2_3_kg_is_high() -> None:
    (c,) = gain(weights(80.0, 80.4, 80.8, 81.1, 81.4, 81.7, 82.0, 82.4, 82.5)).candidates
    assert c.severity is Severity.HIGH
    assert "7d" in c.detail["gains"]
    assert c.detail["gains"]["7d"]["limit_kg"] == 2.3


def test_a_single_heavy_reading_waits_for_confirmation() -> None:
    out = gain(weights(80.0, 80.1, 80.0, 82.5))
    assert out.candidates == ()
    assert out.clear == frozenset()
    assert gain(weights(80.0, 80.1, 80.0, 82.5, 80.1)).clear == {WEIGHT_RULE}


def test_somebody_else_on_the_scale_is_ignored() -> None:
    out = gain(weights(80.0, 80.1, 80.0, 80.2, 101.0, 100.8))
    assert out.candidates == ()


def test_a_same_day_reweigh_is_no_baseline() -> None:
    assert gain([(0, 80.0), (2, 81.8), (3, 81.9)]).candidates == ()
    (c,) = gain([(0, 80.0), (DAY, 80.0), (DAY + 2, 81.8), (DAY + 3, 81.9)]).candidates  # a re-weigh confirms
    assert c.detail["gains"]["1d"]["gain_kg"] == 1.8


def test_patient_specific_gain_limits() -> None:
    cfg = config({"weight_gain_kg": {"1": 0.8}})
    (c,) = gain(weights(80.0, 80.0, 80.9, 81.0), cfg).candidates
    assert c.detail["gains"]["1d"]["limit_kg"] == 0.8


def bp(values: list[tuple[float, float]], spacing_h: float = 12.0):
    sys = [(i * spacing_h, s) for i, (s, _) in enumerate(values)]
    dia = [(i * spacing_h, d) for i, (_, d) in enumerate(values)]
    return history(("bp_systolic", sys), ("bp_diastolic", dia)), at((len(values) - 1) * spacing_h)


def test_seven_day_mean_above_goal_is_low() -> None:
    h, t = bp([(133, 78)] * 12)
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert (c.rule, c.kind, c.metric, c.severity) == (BP_RULE, Kind.TREND, "bp_systolic", Severity.LOW)
    assert c.detail["mean_systolic"] == 133.0
    assert c.detail["goal"] == {"systolic": 130.0, "diastolic": 80.0}


def test_stage_2_mean_is_medium_and_diastolic_alone_counts() -> None:
    h, t = bp([(120, 92)] * 12)
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert (c.metric, c.severity) == ("bp_diastolic", Severity.MEDIUM)


def test_mean_below_goal_is_clear_and_patient_goal_applies() -> None:
    h, t = bp([(133, 78)] * 12)
    assert evaluate_bp_goal(h, t, config({"bp_goal": {"systolic": 140, "diastolic": 90}})).clear == {BP_RULE}


def test_too_few_readings_or_too_short_a_span_says_nothing() -> None:
    h, t = bp([(150, 95)] * 4)
    assert evaluate_bp_goal(h, t, config()).candidates == ()
    h, t = bp([(150, 95)] * 10, spacing_h=2)  # 18 hours of readings
    assert evaluate_bp_goal(h, t, config()).candidates == ()

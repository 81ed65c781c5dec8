from __future__ import annotations

from alerts.model import Kind, Outcome, Severity
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
    h, t = bp([(133, 78)] * 14)  # 7 days twice a day: 12 once the first day is discarded
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert (c.rule, c.kind, c.metric, c.severity) == (BP_RULE, Kind.TREND, "bp_systolic", Severity.LOW)
    assert c.detail["mean_systolic"] == 133.0
    assert c.detail["goal"] == {"systolic": 130.0, "diastolic": 80.0}


def test_stage_2_mean_is_medium_and_diastolic_alone_counts() -> None:
    h, t = bp([(120, 92)] * 14)
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert (c.metric, c.severity) == ("bp_diastolic", Severity.MEDIUM)


def test_mean_below_goal_is_clear_and_patient_goal_applies() -> None:
    h, t = bp([(133, 78)] * 14)
    assert evaluate_bp_goal(h, t, config({"bp_goal": {"systolic": 140, "diastolic": 90}})).clear == {BP_RULE}


def test_too_few_readings_or_too_short_a_span_says_nothing() -> None:
    h, t = bp([(150, 95)] * 4)
    assert evaluate_bp_goal(h, t, config()).candidates == ()
    h, t = bp([(150, 95)] * 10, spacing_h=2)  # 18 hours of readings
    assert evaluate_bp_goal(h, t, config()).candidates == ()


# -- issue 14: home BP protocol, hysteresis, robust weight baseline ---------------------------------


def bp_series(values: list[tuple[float, float]], spacing_h: float = 12.0):
    """Readings every ``spacing_h`` ending at ``at`` of the last one."""
    h, t = bp(values, spacing_h)
    return h, t


def test_the_first_days_readings_are_discarded() -> None:
    # A white-coat first day (discarded, as ESH/AHA home monitoring asks) then a week at goal.
    h, t = bp_series([(170, 100)] * 2 + [(122, 76)] * 14)
    out = evaluate_bp_goal(h, t, config())
    assert out.candidates == ()
    assert out.clear == {BP_RULE}
    h, t = bp_series([(122, 76)] * 2 + [(140, 88)] * 12)
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert (c.detail["readings"], c.detail["first_day_discarded"], c.detail["mean_systolic"]) == (12, 2, 140.0)


def test_at_least_12_readings_and_a_window_that_grows_for_single_readings() -> None:
    h, t = bp_series([(150, 95)] * 13)  # 11 once the first day is gone
    assert evaluate_bp_goal(h, t, config()) == Outcome()
    h, t = bp_series([(150, 95)] * 13, spacing_h=24.0)  # one reading a day: 13 days needed
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert c.detail["readings"] == 12
    assert c.detail["window_days"] == 13


def test_a_mean_sitting_on_the_goal_neither_opens_nor_clears() -> None:
    for value, expect in ((130.5, "hold"), (129.0, "hold"), (131.0, "open"), (126.9, "clear")):
        h, t = bp_series([(value, 70)] * 14)
        out = evaluate_bp_goal(h, t, config())
        got = "open" if out.candidates else "clear" if out.clear else "hold"
        assert got == expect, (value, out)


def test_home_hypertension_135_85_is_medium() -> None:
    h, t = bp_series([(136, 82)] * 14)
    (c,) = evaluate_bp_goal(h, t, config()).candidates
    assert c.severity is Severity.MEDIUM


def test_one_low_weighing_does_not_make_an_ordinary_one_a_gain() -> None:
    # Before issue 14 the 3-day gain was measured from the lowest weighing (77.8): 2.3 kg, high.
    out = gain(weights(80.0, 80.1, 80.0, 77.8, 80.1, 80.0, 80.2, 80.1))
    assert out.candidates == ()
    assert out.clear == {WEIGHT_RULE}
    (c,) = gain(weights(80.0, 80.1, 80.0, 80.2, 81.2, 82.3, 82.4)).candidates  # a real gain still fires
    assert c.detail["gains"]["3d"]["baseline_kg"] == 80.0


def test_a_gain_just_below_its_limit_does_not_clear() -> None:
    assert gain(weights(80.0, 80.0, 80.0, 81.3, 81.3)) == Outcome()  # 1.3 kg: within 0.3 of 1.4
    assert gain(weights(80.0, 80.0, 80.0, 81.0, 81.0)).clear == {WEIGHT_RULE}

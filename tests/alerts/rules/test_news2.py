"""NEWS2 against the Royal College of Physicians chart (docs/reference/clinical.md), cell by cell."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.config import RulesConfig
from alerts.model import Kind, Outcome, Severity
from alerts.rules.news2 import (
    PARAMETERS,
    evaluate_news2,
    news2_band,
    news2_score,
    score_pulse,
    score_respiration,
    score_spo2,
    score_systolic,
    score_temperature,
)
from tests.alerts.helpers import at, config, history

RESPIRATION = [(5, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3)]
SPO2_SCALE_1 = [(80, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_SCALE_2_AIR = [(80, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 0), (99, 0)]
SPO2_SCALE_2_OXYGEN = [
    (83, 3),
    (84, 2),
    (86, 1),
    (88, 0),
    (92, 0),
    (93, 1),
    (94, 1),
    (95, 2),
    (96, 2),
    (97, 3),
    (100, 3),
]
SYSTOLIC = [(70, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (250, 3)]
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)]
TEMPERATURE = [
    (34.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (41, 2),
]


@pytest.mark.parametrize(("value", "points"), RESPIRATION)
def test_respiration_rate(value, points) -> None:
    assert score_respiration(value) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_1)
def test_spo2_scale_1(value, points) -> None:
    assert score_spo2(value, scale=1) == points
    assert score_spo2(value, scale=1, on_oxygen=True) == points  # scale 1 ignores oxygen (it scores separately)


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_2_AIR)
def test_spo2_scale_2_on_air(value, points) -> None:
    assert score_spo2(value, scale=2, on_oxygen=False) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_2_OXYGEN)
def test_spo2_scale_2_on_oxygen(value, points) -> None:
    assert score_spo2(value, scale=2, on_oxygen=True) == points


@pytest.mark.parametrize(("value", "points"), SYSTOLIC)
def test_systolic_blood_pressure(value, points) -> None:
    assert score_systolic(value) == points


@pytest.mark.parametrize(("value", "points"), PULSE)
def test_pulse(value, points) -> None:
    assert score_pulse(value) == points


@pytest.mark.parametrize(("value", "points"), TEMPERATURE)
def test_temperature(value, points) -> None:
    assert score_temperature(value) == points


def test_values_are_rounded_as_charted() -> None:
    assert score_pulse(90.4) == 0
    assert score_pulse(90.5) == 1
    assert score_temperature(38.04) == 0
    assert score_temperature(38.05) == 1
    assert score_spo2(95.5, scale=1) == 0
    assert score_spo2(95.4, scale=1) == 1


@pytest.mark.parametrize(
    ("total", "subscores", "band"),
    [
        (0, {}, "low"),
        (4, {"a": 2, "b": 2}, "low"),
        (3, {"spo2": 3}, "low_medium"),
        (4, {"spo2": 3, "heart_rate": 1}, "low_medium"),
        (5, {"a": 2, "b": 2, "c": 1}, "medium"),
        (6, {"a": 3, "b": 3}, "medium"),
        (7, {"a": 3, "b": 2, "c": 2}, "high"),
        (12, {"a": 3}, "high"),
    ],
)
def test_aggregate_bands(total, subscores, band) -> None:
    assert news2_band(total, subscores) == band


def normal(hours: float) -> list:
    return [
        ("respiratory_rate", [(hours, 16)]),
        ("spo2", [(hours, 97)]),
        ("bp_systolic", [(hours, 125)]),
        ("heart_rate", [(hours, 70)]),
        ("body_temperature", [(hours, 36.8)]),
    ]


def test_score_uses_the_latest_value_of_each_parameter_within_the_window() -> None:
    h = history(("heart_rate", [(0, 135), (5, 70)]), ("spo2", [(-30, 85), (5, 97)]), ("bp_systolic", [(-30, 80)]))
    s = news2_score(h, at(6), timedelta(hours=24), scale=1, on_oxygen=False)
    assert s.subscores["heart_rate"] == 0
    assert s.subscores["spo2"] == 0
    assert "bp_systolic" not in s.subscores  # 36 h old: outside the window
    assert set(s.missing) == {"bp_systolic", "respiratory_rate", "body_temperature"}


def test_all_normal_is_clear() -> None:
    out = evaluate_news2(history(*normal(0), *normal(1)), at(1), config())
    assert out.candidates == ()
    assert out.clear == {"news2"}


def test_too_few_parameters_is_silent() -> None:
    h = history(("spo2", [(0, 80), (1, 80)]), ("heart_rate", [(0, 140), (1, 140)]))
    assert evaluate_news2(h, at(1), config()) == Outcome()


def test_a_single_3_is_low_medium_and_reports_missing_and_assumed() -> None:
    h = history(("spo2", [(0, 91), (1, 90)]), ("heart_rate", [(0, 70), (1, 72)]), ("bp_systolic", [(0, 120), (1, 122)]))
    (c,) = evaluate_news2(h, at(1), config()).candidates
    assert (c.kind, c.metric, c.rule, c.severity) == (Kind.NEWS2, None, "news2", Severity.MEDIUM)
    assert c.detail["score"] == 3
    assert c.detail["band"] == "low_medium"
    assert set(c.detail["missing"]) == {"respiratory_rate", "body_temperature"}
    assert c.detail["assumed"]["consciousness"].startswith("alert")
    assert c.detail["assumed"]["supplemental_oxygen"].startswith("air")
    assert {o.metric for o in c.evidence} == {"spo2", "heart_rate", "bp_systolic"}


def test_medium_and_high_bands() -> None:
    medium = history(
        ("respiratory_rate", [(0, 22), (1, 22)]),
        ("spo2", [(0, 94), (1, 94)]),
        ("heart_rate", [(0, 100), (1, 100)]),
        ("body_temperature", [(0, 38.5), (1, 38.5)]),
    )  # 2 + 1 + 1 + 1
    (c,) = evaluate_news2(medium, at(1), config()).candidates
    assert (c.detail["score"], c.severity) == (5, Severity.HIGH)
    high = history(
        ("respiratory_rate", [(1, 26)]), ("spo2", [(1, 91)]), ("heart_rate", [(1, 120)]), ("bp_systolic", [(1, 120)])
    )  # 3 + 3 + 2: >= 7 fires on single readings
    (c,) = evaluate_news2(high, at(1), config()).candidates
    assert (c.detail["score"], c.severity, c.detail["band"]) == (8, Severity.CRITICAL, "high")


def test_one_artefact_reading_is_not_confirmed() -> None:
    h = history(("spo2", [(0, 97), (1, 88)]), ("heart_rate", [(0, 70), (1, 70)]), ("bp_systolic", [(0, 120), (1, 120)]))
    out = evaluate_news2(h, at(1), config())
    assert out.candidates == ()
    assert out.clear == frozenset()


def test_a_parameter_read_once_is_unconfirmed_and_scores_nothing() -> None:
    h = history(("spo2", [(1, 88)]), ("heart_rate", [(0, 70), (1, 70)]), ("bp_systolic", [(0, 120), (1, 120)]))
    assert evaluate_news2(h, at(1), config()).candidates == ()


def test_supplemental_oxygen_from_the_patient_settings_scores_2_and_is_said() -> None:
    h = history(("spo2", [(0, 95), (1, 95)]), ("heart_rate", [(0, 95), (1, 95)]), ("bp_systolic", [(0, 105), (1, 105)]))
    (c,) = evaluate_news2(h, at(1), config({"spo2_scale": 2, "supplemental_oxygen": True})).candidates
    assert c.detail["subscores"]["supplemental_oxygen"] == 2
    assert c.detail["score"] == 2 + 2 + 1 + 1
    assert c.detail["assumed"]["supplemental_oxygen"].startswith("oxygen")


def test_parameters_are_the_five_home_measurable_ones() -> None:
    assert set(PARAMETERS) == {"respiratory_rate", "spo2", "bp_systolic", "heart_rate", "body_temperature"}


# -- issue 14: a spot check of several parameters, each read once ---------------------------------


def spot_check(hours: float, rr: float, spo2: float, hr: float, temp: float, sys: float = 125) -> list:
    return [
        ("respiratory_rate", [(hours, rr)]),
        ("spo2", [(hours, spo2)]),
        ("bp_systolic", [(hours, sys)]),
        ("heart_rate", [(hours, hr)]),
        ("body_temperature", [(hours, temp)]),
    ]


def test_a_spot_check_scoring_5_or_more_opens_unconfirmed_and_names_what_to_repeat() -> None:
    h = history(*normal(-20), *spot_check(0, rr=22, spo2=94, hr=115, temp=38.3))  # 2 + 1 + 2 + 1
    (c,) = evaluate_news2(h, at(0), config()).candidates
    assert (c.severity, c.unconfirmed, c.detail["score"], c.detail["band"]) == (Severity.HIGH, True, 6, "medium")
    assert c.detail["awaiting_confirmation"] is True
    assert c.detail["confirmed_score"] == 0
    assert set(c.detail["remeasure"]) == {"respiratory_rate", "spo2", "heart_rate", "body_temperature"}
    first = history(*spot_check(0, rr=22, spo2=94, hr=115, temp=38.3))  # no earlier readings at all
    (c,) = evaluate_news2(first, at(0), config()).candidates
    assert c.unconfirmed


def test_the_repeat_confirms_or_clears_the_spot_check() -> None:
    sick = spot_check(0, rr=22, spo2=94, hr=115, temp=38.3)
    repeat = spot_check(0.25, rr=23, spo2=94, hr=118, temp=38.4)
    (c,) = evaluate_news2(history(*sick, *repeat), at(0.25), config()).candidates
    assert (c.unconfirmed, c.severity, c.detail["score"]) == (False, Severity.HIGH, 6)
    fine = spot_check(0.25, rr=16, spo2=97, hr=72, temp=36.8)
    out = evaluate_news2(history(*sick, *fine), at(0.25), config())
    assert (out.candidates, out.clear) == ((), {"news2"})


def test_below_5_or_switched_off_a_spot_check_waits_silently() -> None:
    h = history(*normal(-20), *spot_check(0, rr=16, spo2=91, hr=72, temp=36.8))  # a single 3, unconfirmed
    assert evaluate_news2(h, at(0), config()) == Outcome()
    h = history(*normal(-20), *spot_check(0, rr=22, spo2=94, hr=115, temp=38.3))
    assert evaluate_news2(h, at(0), config(rules=RulesConfig(news2={"unconfirmed_score": None}))) == Outcome()
    assert evaluate_news2(h, at(0), config(rules=RulesConfig(remeasure_unconfirmed=False))) == Outcome()

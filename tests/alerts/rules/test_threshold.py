from __future__ import annotations

import pytest

from alerts.config import Band, PatientConfig, RulesConfig
from alerts.errors import AlertsConfigError
from alerts.model import Kind, Severity
from alerts.rules.threshold import evaluate_thresholds
from tests.alerts.helpers import at, config, history


def run(metric: str, points: list[tuple[float, float]], cfg: PatientConfig | None = None):
    h = history((metric, points))
    return evaluate_thresholds(h, at(points[-1][0]), [metric], cfg or config())


def only(outcome):
    assert len(outcome.candidates) == 1, outcome
    return outcome.candidates[0]


@pytest.mark.parametrize(
    ("metric", "values", "severity", "rule"),
    [
        # NHS England home oximetry: 93-94 seek advice, <= 92 urgent; each confirmed by a re-measurement.
        ("spo2", [94, 93], Severity.MEDIUM, "threshold:spo2:low"),
        ("spo2", [92, 92], Severity.HIGH, "threshold:spo2:low"),
        ("spo2", [85], Severity.HIGH, "threshold:spo2:low"),  # dangerous single value: urgent at once
        ("spo2", [85, 84], Severity.CRITICAL, "threshold:spo2:low"),
        # ACC/AHA severe hypertension > 180 and/or > 120, confirmed; >= 220 (NEWS2 3) on one reading.
        ("bp_systolic", [181, 185], Severity.HIGH, "threshold:bp_systolic:high"),
        ("bp_systolic", [220], Severity.CRITICAL, "threshold:bp_systolic:high"),
        ("bp_systolic", [90, 88], Severity.HIGH, "threshold:bp_systolic:low"),
        ("bp_diastolic", [121, 125], Severity.HIGH, "threshold:bp_diastolic:high"),
        # ADA: level 1 < 70, level 2 < 54 (single readings); hyperglycaemia > 180 x3, > 250 x2.
        ("glucose", [69], Severity.MEDIUM, "threshold:glucose:low"),
        ("glucose", [53], Severity.CRITICAL, "threshold:glucose:low"),
        ("glucose", [181, 190, 200], Severity.MEDIUM, "threshold:glucose:high"),
        ("glucose", [251, 300], Severity.HIGH, "threshold:glucose:high"),
        # NEWS2 bands: pulse <= 40 / >= 131 (3 points), 111-130 (2 points); temperature; respiration.
        ("heart_rate", [40, 38], Severity.HIGH, "threshold:heart_rate:low"),
        ("heart_rate", [131, 140], Severity.HIGH, "threshold:heart_rate:high"),
        ("heart_rate", [111, 115, 120], Severity.MEDIUM, "threshold:heart_rate:high"),
        ("body_temperature", [38.1, 38.5], Severity.MEDIUM, "threshold:body_temperature:high"),
        ("body_temperature", [39.1, 39.4], Severity.HIGH, "threshold:body_temperature:high"),
        ("body_temperature", [35.0, 34.8], Severity.HIGH, "threshold:body_temperature:low"),
        ("respiratory_rate", [21, 22], Severity.MEDIUM, "threshold:respiratory_rate:high"),
        ("respiratory_rate", [25, 26], Severity.HIGH, "threshold:respiratory_rate:high"),
        ("respiratory_rate", [8, 7], Severity.HIGH, "threshold:respiratory_rate:low"),
    ],
)
def test_default_bands_fire_at_their_reference_thresholds(metric, values, severity, rule) -> None:
    c = only(run(metric, [(i, v) for i, v in enumerate(values)]))
    assert (c.rule, c.severity, c.kind, c.metric) == (rule, severity, Kind.THRESHOLD, metric)
    assert [o.value for o in c.evidence] == values[-len(c.evidence) :]


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("spo2", 95),
        ("bp_systolic", 180),
        ("bp_diastolic", 120),
        ("glucose", 70),
        ("glucose", 180),
        ("heart_rate", 41),
        ("heart_rate", 110),
        ("body_temperature", 38.0),
        ("body_temperature", 35.1),
        ("respiratory_rate", 20),
        ("respiratory_rate", 9),
    ],
)
def test_values_just_inside_normal_are_clear(metric, value) -> None:
    out = run(metric, [(0, value), (1, value), (2, value)])
    assert out.candidates == ()
    assert any(k.startswith(f"threshold:{metric}:") for k in out.clear)


def test_one_artefact_does_not_page_and_waits_for_confirmation() -> None:
    out = run("spo2", [(0, 97), (1, 90)])
    # Issue 14: not silent any more, but unconfirmed: the patient is asked to repeat, nobody is paged.
    c = only(out)
    assert c.unconfirmed
    assert (c.detail["awaiting_confirmation"], c.detail["remeasure"]) == (True, ["spo2"])
    assert "threshold:spo2:low" not in out.clear  # pending, not clear
    silent = config(rules=RulesConfig(remeasure_unconfirmed=False))
    assert run("spo2", [(0, 97), (1, 90)], silent).candidates == ()  # the old behaviour, on request


def test_confirmation_must_fall_within_the_window() -> None:
    assert only(run("spo2", [(0, 90), (25, 90)])).unconfirmed  # 25 h apart > 24 h: not confirmed
    c = only(run("spo2", [(0, 90), (23, 90)]))
    assert (c.severity, c.unconfirmed) == (Severity.HIGH, False)


def test_the_worst_confirmed_band_wins_over_an_unconfirmed_worse_one() -> None:
    c = only(run("spo2", [(0, 94), (1, 93), (2, 91)]))  # only the last is <= 92: advice level
    assert c.severity is Severity.MEDIUM
    assert [o.value for o in c.evidence] == [93, 91]


def test_sustained_duration_confirms_a_stream() -> None:
    band = Band(op=">=", value=131, severity="high", confirm=20, sustain_min=10, label="sustained")
    cfg = config({"thresholds": {"heart_rate": [band.model_dump()]}})
    minutes = [(m / 60, 140) for m in range(0, 11)]
    assert only(run("heart_rate", minutes, cfg)).summary == "sustained"
    assert only(run("heart_rate", minutes[:5], cfg)).unconfirmed  # only 4 minutes so far


def test_both_directions_are_separate_rules() -> None:
    out = run("glucose", [(0, 60)])
    assert only(out).rule == "threshold:glucose:low"
    assert "threshold:glucose:high" in out.clear


def test_patient_overrides_replace_a_metric_bands() -> None:
    cfg = config({"thresholds": {"spo2": [{"op": "<=", "value": 88, "severity": "high", "confirm": 1}]}})
    assert run("spo2", [(0, 90)], cfg).candidates == ()
    assert only(run("spo2", [(0, 88)], cfg)).severity is Severity.HIGH


def test_scale_2_patients_use_the_hypercapnic_bands() -> None:
    cfg = config({"spo2_scale": 2})
    assert run("spo2", [(0, 89), (1, 88)], cfg).candidates == ()  # target range 88-92
    assert only(run("spo2", [(0, 86), (1, 87)], cfg)).severity is Severity.MEDIUM
    assert only(run("spo2", [(0, 84), (1, 85)], cfg)).severity is Severity.HIGH
    assert only(run("spo2", [(0, 83), (1, 82)], cfg)).severity is Severity.CRITICAL


def test_disabled_rules_are_silent() -> None:
    cfg = config({"disabled_rules": ["threshold:spo2"]})
    out = run("spo2", [(0, 80), (1, 80)], cfg)
    assert out.candidates == ()
    assert out.clear == frozenset()


def test_a_later_reading_is_not_seen_by_an_earlier_evaluation() -> None:
    h = history(("spo2", [(0, 90), (1, 97), (2, 90)]))
    assert evaluate_thresholds(h, at(1), ["spo2"], config()).candidates == ()


def test_unknown_metrics_in_overrides_are_rejected() -> None:
    with pytest.raises(AlertsConfigError):
        PatientConfig.resolve(RulesConfig(), {"thresholds": {"shoe_size": []}})


def test_organisation_settings_override_some_metrics_and_keep_the_other_defaults() -> None:
    rules = RulesConfig(thresholds={"glucose": [{"op": "<", "value": 60, "severity": "high"}], "spo2": []})
    cfg = PatientConfig.resolve(rules, None)
    assert [b.value for b in cfg.bands["glucose"]] == [60]
    assert cfg.bands["spo2"] == ()
    assert cfg.bands["heart_rate"] == RulesConfig().thresholds["heart_rate"]


# -- issue 14: N of the last M readings, unconfirmed single readings, accepted baselines -------------


def test_a_persistent_tachycardia_with_one_lower_reading_between_confirms() -> None:
    c = only(run("heart_rate", [(0, 135), (2, 128), (4, 140)]))  # >= 131 on 2 of the last 3
    assert (c.severity, c.unconfirmed) == (Severity.HIGH, False)
    assert [o.value for o in c.evidence] == [135, 140]
    assert (c.detail["confirm"], c.detail["of"]) == (2, 3)
    consecutive = config({"thresholds": {"heart_rate": [{"op": ">=", "value": 131, "severity": "high", "confirm": 2}]}})
    assert only(run("heart_rate", [(0, 135), (2, 128), (4, 140)], consecutive)).unconfirmed  # never confirms


def test_n_of_m_counts_only_readings_within_the_window() -> None:
    assert only(run("heart_rate", [(0, 135), (20, 128), (26, 140)])).unconfirmed  # 135 is 26 h before 140
    c = only(run("heart_rate", [(0, 112), (1, 108), (2, 115), (3, 118)]))  # >= 111 on 3 of the last 4
    assert (c.severity, c.unconfirmed) == (Severity.MEDIUM, False)


def test_a_single_reading_below_the_critical_band_asks_for_a_repeat_at_the_worst_band_it_is_in() -> None:
    c = only(run("spo2", [(0, 97), (1, 87)]))  # in <= 94 and <= 92, confirmed in neither
    assert (c.severity, c.unconfirmed, c.detail["threshold"]) == (Severity.HIGH, True, 92)
    assert c.summary.startswith("unconfirmed:")
    assert [o.value for o in c.evidence] == [87]


def test_critical_single_readings_still_act_at_once() -> None:
    for metric, value, severity in (("glucose", 50, Severity.CRITICAL), ("bp_systolic", 225, Severity.CRITICAL)):
        c = only(run(metric, [(0, value)]))
        assert (c.severity, c.unconfirmed) == (severity, False)


def test_an_accepted_baseline_turns_off_the_bands_the_patients_normal_lies_in() -> None:
    copd = config(None)
    copd = copd.model_copy(update={"baselines": {"threshold:spo2:low": 91.0}})
    out = run("spo2", [(0, 92), (12, 91), (24, 92)], copd)  # her normal: no alert, and clear
    assert out.candidates == ()
    assert "threshold:spo2:low" in out.clear
    c = only(run("spo2", [(0, 84), (1, 84)], copd))  # beyond her normal: the <= 85 bands still fire
    assert c.severity is Severity.CRITICAL
    athlete = config(None).model_copy(update={"baselines": {"threshold:heart_rate:low": 39.0}})
    out = run("heart_rate", [(0, 39), (12, 38)], athlete)  # every low band contains it: his normal
    assert out.candidates == ()
    assert "threshold:heart_rate:low" in out.clear


def test_a_baseline_never_turns_off_a_critical_band() -> None:
    cfg = config(None).model_copy(update={"baselines": {"threshold:glucose:low": 52.0}})
    assert only(run("glucose", [(0, 50)], cfg)).severity is Severity.CRITICAL

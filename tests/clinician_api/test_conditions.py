"""Conditions seed a patient's alert settings; a change of conditions moves only the keys still at
the old conditions' defaults; the keys the API accepts are exactly the ones the engine reads."""

from __future__ import annotations

import pytest

from alerts.config import RulesConfig, _PatientDoc
from alerts.errors import AlertsConfigError
from clinician_api.conditions import ALERT_KEYS, defaults_for, reseed, validate_settings


def test_the_accepted_keys_are_the_engines() -> None:
    assert set(_PatientDoc.model_fields) == ALERT_KEYS


def test_defaults_per_condition() -> None:
    assert defaults_for([]) == {}
    assert defaults_for(["copd"]) == {"spo2_scale": 2, "expected_metrics": ["heart_rate", "spo2"]}
    assert defaults_for(["hypertension"])["bp_goal"] == {"systolic": 130.0, "diastolic": 80.0}
    both = defaults_for(["diabetes", "heart_failure"])
    assert both == {"expected_metrics": ["body_weight", "glucose", "heart_rate"]}
    for conditions in (["copd"], ["hypertension", "diabetes", "heart_failure", "copd"]):
        validate_settings(defaults_for(conditions), RulesConfig())  # every seed is valid


def test_reseed_keeps_a_deliberate_choice() -> None:
    seeded = defaults_for(["copd"])
    assert reseed(["copd"], [], seeded) == {}
    chosen = {**seeded, "spo2_scale": 1, "news2_window_h": 12}
    assert reseed(["copd"], [], chosen) == {"spo2_scale": 1, "news2_window_h": 12}
    assert reseed([], ["copd"], {"spo2_scale": 1}) == {"spo2_scale": 1, "expected_metrics": ["heart_rate", "spo2"]}


def test_unknown_keys_and_bad_values_are_refused() -> None:
    with pytest.raises(AlertsConfigError, match="colour"):
        validate_settings({"colour": "red"}, RulesConfig())
    with pytest.raises(AlertsConfigError, match="spo2_scale"):
        validate_settings({"spo2_scale": 3}, RulesConfig())

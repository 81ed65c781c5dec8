"""Conditions that set a patient's alert defaults, and the validation of a settings document (pure).

A condition seeds keys of the alert settings document (``patients.settings``, read by the alert
engine through :class:`alerts.config.PatientConfig`):

- ``copd``: SpO2 scale 2 (target 88-92 %, NEWS2 scale 2 bands), SpO2 and pulse expected;
- ``heart_failure``: daily weight (the weight-gain trend rule's data) and pulse expected;
- ``hypertension``: the home blood-pressure goal 130/80 mmHg, both pressures expected;
- ``diabetes``: glucose expected.

``expected_metrics`` is the union over the conditions (the missing-data rule then watches exactly
those). When conditions change, :func:`reseed` moves only the keys that still hold what the old
conditions had set: a value a clinician chose on purpose survives a change of conditions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from alerts.config import PatientConfig, RulesConfig
from alerts.errors import AlertsConfigError

__all__ = ["ALERT_KEYS", "CONDITIONS", "Condition", "defaults_for", "reseed", "validate_settings"]

Condition = Literal["heart_failure", "hypertension", "copd", "diabetes"]
CONDITIONS: Final[tuple[Condition, ...]] = ("heart_failure", "hypertension", "copd", "diabetes")

# The keys PatientConfig reads from a patient's settings document (alerts/config.py _PatientDoc).
ALERT_KEYS: Final = frozenset(
    {
        "spo2_scale",
        "supplemental_oxygen",
        "thresholds",
        "bp_goal",
        "weight_gain_kg",
        "expected_metrics",
        "missing_data_after_h",
        "news2_window_h",
        "disabled_rules",
        "anomaly",
    }
)

_EXPECTED: Final[dict[str, tuple[str, ...]]] = {
    "heart_failure": ("body_weight", "heart_rate"),
    "hypertension": ("bp_systolic", "bp_diastolic"),
    "copd": ("spo2", "heart_rate"),
    "diabetes": ("glucose",),
}


def defaults_for(conditions: Iterable[str]) -> dict[str, Any]:
    """The settings keys the conditions set (an empty document without conditions)."""
    chosen = [c for c in CONDITIONS if c in set(conditions)]
    doc: dict[str, Any] = {}
    if "copd" in chosen:
        doc["spo2_scale"] = 2
    if "hypertension" in chosen:
        doc["bp_goal"] = {"systolic": 130.0, "diastolic": 80.0}
    expected = sorted({m for c in chosen for m in _EXPECTED[c]})
    if expected:
        doc["expected_metrics"] = expected
    return doc


def reseed(old: Iterable[str], new: Iterable[str], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with the condition defaults moved from ``old`` to ``new`` conditions, except
    where the document no longer holds the old default (a clinician's own choice)."""
    before, after = defaults_for(old), defaults_for(new)
    out = dict(settings)
    for key in before.keys() | after.keys():
        if out.get(key) != before.get(key):
            continue  # set on purpose: keep it
        if key in after:
            out[key] = after[key]
        else:
            out.pop(key, None)
    return out


def validate_settings(settings: Mapping[str, Any], rules: RulesConfig) -> PatientConfig:
    """The patient's resolved rules; :class:`AlertsConfigError` for an unknown key or a bad value."""
    unknown = set(settings) - ALERT_KEYS
    if unknown:
        raise AlertsConfigError(f"unknown settings keys: {', '.join(sorted(unknown))}")
    return PatientConfig.resolve(rules, settings)

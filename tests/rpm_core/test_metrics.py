from __future__ import annotations

import math

import pytest

from rpm_core.errors import ImplausibleValue, UnknownMetric
from rpm_core.metrics import CATALOGUE, check_value, metric

EXPECTED_UNITS = {
    "heart_rate": "/min",
    "rr_interval": "ms",
    "spo2": "%",
    "bp_systolic": "mm[Hg]",
    "bp_diastolic": "mm[Hg]",
    "bp_mean": "mm[Hg]",
    "body_temperature": "Cel",
    "body_weight": "kg",
    "bmi": "kg/m2",
    "body_height": "m",
    "glucose": "mg/dL",
    "hba1c": "%",
    "respiratory_rate": "/min",
}

# From docs/reference/clinical.md.
EXPECTED_LOINC = {
    "heart_rate": "8867-4",
    "spo2": "59408-5",
    "bp_systolic": "8480-6",
    "bp_diastolic": "8462-4",
    "bp_mean": "8478-0",
    "body_temperature": "8310-5",
    "body_weight": "29463-7",
    "glucose": "41653-7",
    "respiratory_rate": "9279-1",
    "rr_interval": "8637-1",
    "hba1c": "4548-4",  # Hemoglobin A1c/Hemoglobin.total in Blood
}
EXPECTED_MDC = {
    "heart_rate": 147842,
    "spo2": 150456,
    "bp_systolic": 150021,
    "bp_diastolic": 150022,
    "bp_mean": 150023,
    "body_temperature": 150364,
    "body_weight": 188736,
    "glucose": 160184,
    "respiratory_rate": 151562,
    "hba1c": 160220,  # MDC_CONC_HBA1C 29148 in partition 2 (glucose 160184 is MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD 29112)
}


def test_catalogue_has_exactly_the_platform_metrics_with_canonical_units() -> None:
    assert {name: m.unit for name, m in CATALOGUE.items()} == EXPECTED_UNITS


def test_codes_match_the_clinical_reference() -> None:
    for name, loinc in EXPECTED_LOINC.items():
        assert CATALOGUE[name].loinc == loinc
    for name, mdc in EXPECTED_MDC.items():
        assert CATALOGUE[name].mdc == mdc


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("spo2", 97.0, 120.5),
        ("heart_rate", 72.0, 3.3),
        ("body_temperature", 37.6, 61.5),
        ("bp_systolic", 138.0, 501.5),
        ("glucose", 100.0, 1.5),
        ("body_weight", 70.0, -7.25),
        ("hba1c", 6.5, 34.5),
    ],
)
def test_plausible_range_accepts_real_values_and_rejects_impossible_ones(name: str, good: float, bad: float) -> None:
    assert check_value(name, good) == good
    with pytest.raises(ImplausibleValue) as err:
        check_value(name, bad)
    assert err.value.metric == name
    assert err.value.value == bad
    # The message may reach a log: it must not carry the value.
    assert str(bad) not in str(err.value)


def test_non_finite_values_are_never_plausible() -> None:
    for v in (math.nan, math.inf, -math.inf):
        assert not metric("heart_rate").is_plausible(v)


def test_unknown_metric_is_a_typed_error() -> None:
    with pytest.raises(UnknownMetric) as err:
        metric("blood_alcohol")
    assert err.value.metric == "blood_alcohol"

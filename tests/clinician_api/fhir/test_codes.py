"""The coding tables agree with rpm_core's catalogue and cover every flag the edge can emit."""

from __future__ import annotations

import pytest

from clinician_api.fhir import metrics_for_code
from clinician_api.fhir.codes import FLAG_EFFECTS, LOINC, MDC, METRIC_CODINGS, flag_effect
from clinician_api.fhir.records import ABSENT_REASONS
from edge_agent.devices import blood_pressure, glucose, pulse_oximeter, sfloat, thermometer
from edge_agent.devices.reading import DEVICE_TIME_INCOMPLETE
from edge_agent.timefix import CLOCK_SKEW_FLAG
from rpm_core.metrics import CATALOGUE


def test_one_coding_per_catalogue_metric_agreeing_with_the_catalogue() -> None:
    assert set(METRIC_CODINGS) == set(CATALOGUE)
    for name, entry in CATALOGUE.items():
        coding = METRIC_CODINGS[name]
        assert entry.loinc in [c.code for c in coding.loinc]
        assert all(c.system == LOINC for c in coding.loinc)
        assert (coding.mdc.code if coding.mdc else None) == (str(entry.mdc) if entry.mdc else None)
        if coding.mdc:
            assert coding.mdc.system == MDC
        assert coding.unit == entry.unit or (name, coding.unit, coding.factor) == ("body_height", "cm", 100)


def test_absent_reasons_are_the_edge_decoders() -> None:
    assert frozenset(sfloat.ABSENT_REASONS) == ABSENT_REASONS


def _edge_flags() -> set[str]:
    flags = set(blood_pressure.status_flags(0xFFFF & ~(0b11 << 3)))
    flags |= {"pulse_rate_above_range", "pulse_rate_below_range"}
    flags |= set(pulse_oximeter.MEASUREMENT_STATUS_BITS.values())
    flags |= set(pulse_oximeter.DEVICE_SENSOR_STATUS_BITS.values())
    flags |= set(glucose.SENSOR_STATUS_BITS.values())
    flags |= {pulse_oximeter.DEVICE_CLOCK_NOT_SET, DEVICE_TIME_INCOMPLETE, CLOCK_SKEW_FLAG}
    flags |= {"context_follows", "measurement_unsuccessful"}
    return flags


def test_every_boolean_flag_the_edge_emits_has_an_explicit_effect() -> None:
    missing = _edge_flags() - set(FLAG_EFFECTS)
    assert not missing


def test_enumerated_flags_have_their_effect() -> None:
    for sample in glucose.SampleType:
        effect = flag_effect(sample.flag)
        assert effect.kind == "coding"
    for site in glucose.SampleLocation:
        assert flag_effect(site.flag).kind == "body_site"
    for kind in thermometer.TemperatureType:
        assert flag_effect(f"site:{kind.site}").kind == "body_site"
    for contact in ("sensor_contact:detected", "sensor_contact:unsupported"):
        assert flag_effect(contact).kind == "ignore"


@pytest.mark.parametrize(
    ("system", "code", "metrics"),
    [
        (LOINC, "85354-9", {"bp_systolic", "bp_diastolic", "bp_mean"}),
        (MDC, "150020", {"bp_systolic", "bp_diastolic", "bp_mean"}),
        (None, "8480-6", set()),  # a component code: FHIR's code parameter does not search components
        (LOINC, "8867-4", {"heart_rate"}),
        (MDC, "149530", {"heart_rate"}),
        (None, "59408-5", {"spo2"}),
        (LOINC, "2708-6", {"spo2"}),
        (LOINC, "2345-7", {"glucose"}),
        (MDC, "8867-4", set()),
        (LOINC, "nope", set()),
    ],
)
def test_metrics_for_a_searched_code(system, code, metrics) -> None:
    assert metrics_for_code(system, code) == metrics

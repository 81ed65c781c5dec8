"""Observations per metric, the blood-pressure panel, special values and status flags.

Every resource built here goes through conformance.validate (fhir.resources R4B + R4 rules).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinician_api.fhir import InvalidRecord, ReadingRecord, group_readings, observation
from clinician_api.fhir.codes import LOINC, MDC, METRIC_CODINGS
from rpm_core.metrics import CATALOGUE

from .conformance import validate
from .strategies import readings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CUFF = "AA:BB:CC:DD:EE:FF"


MID = object()


def reading(metric: str, value=MID, *, seq: int = 1, flags=(), at=T0, device=CUFF, **kw):
    entry = CATALOGUE[metric]
    v = (entry.low + entry.high) / 2 if value is MID else value
    return ReadingRecord("pat-1", "org1", "agt-1", device, seq, metric, v, entry.unit, at, flags=flags, **kw)


def codes(concept, system):
    return [c["code"] for c in concept["coding"] if c["system"] == system]


@pytest.mark.parametrize("metric", sorted(set(CATALOGUE) - {"bp_systolic", "bp_diastolic", "bp_mean"}))
def test_every_metric_is_coded_with_loinc_mdc_and_ucum(metric: str) -> None:
    obs = observation([reading(metric)])
    validate(obs)
    entry = CATALOGUE[metric]
    assert entry.loinc in codes(obs["code"], LOINC)
    if entry.mdc is not None:
        assert codes(obs["code"], MDC) == [str(entry.mdc)]
    assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert obs["valueQuantity"]["code"] == METRIC_CODINGS[metric].unit
    assert obs["effectiveDateTime"] == "2026-03-01T08:00:00Z"
    assert obs["device"] == {"reference": "Device/phd-AA.3ABB.3ACC.3ADD.3AEE.3AFF"}
    assert obs["extension"][0]["valueReference"] == {"reference": "Device/phg-agt-1"}
    assert obs["subject"] == {"reference": "Patient/pat-1"}


def test_spo2_carries_both_loinc_codes_the_vital_signs_profile_and_the_phd_ig_use() -> None:
    obs = observation([reading("spo2", 97.0)])
    validate(obs)
    assert codes(obs["code"], LOINC) == ["2708-6", "59408-5"]
    assert codes(obs["code"], MDC) == ["150456"]
    assert obs["meta"]["profile"][-1] == "http://hl7.org/fhir/StructureDefinition/oxygensat"


def test_vital_signs_category_only_for_vital_signs() -> None:
    assert observation([reading("heart_rate")])["category"][0]["coding"][0]["code"] == "vital-signs"
    glucose = observation([reading("glucose", 110.0)])
    validate(glucose)
    assert "category" not in glucose
    assert "meta" not in glucose


def test_body_height_is_converted_to_cm_exactly() -> None:
    obs = observation([reading("body_height", 1.1)])
    validate(obs)
    assert obs["valueQuantity"] == {"value": 110.0, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}


@pytest.mark.parametrize(
    ("profile", "mdc"),
    [("blood_pressure", "149546"), ("pulse_oximeter", "149530"), ("heart_rate", "147842"), (None, "147842")],
)
def test_pulse_rate_is_coded_by_the_device_that_measured_it(profile, mdc) -> None:
    profiles = {CUFF: profile} if profile else {}
    obs = observation([reading("heart_rate", 64.0)], device_profiles=profiles)
    validate(obs)
    assert codes(obs["code"], MDC) == [mdc]
    assert codes(obs["code"], LOINC) == ["8867-4"]


@pytest.mark.parametrize(
    ("flag", "loinc", "mdc"),
    [
        (None, "41653-7", "160184"),
        ("sample:capillary_whole_blood", "41653-7", "160184"),
        ("sample:capillary_plasma", "2345-7", "160188"),
        ("sample:venous_whole_blood", "2339-0", "160192"),
        ("sample:arterial_plasma", "2345-7", "160204"),
        ("sample:undetermined_whole_blood", "2339-0", "160020"),
        ("sample:interstitial_fluid", None, "160212"),
    ],
)
def test_glucose_sample_type_selects_the_codes(flag, loinc, mdc) -> None:
    obs = observation([reading("glucose", 98.0, flags=(flag,) if flag else ())])
    validate(obs)
    assert codes(obs["code"], LOINC) == ([loinc] if loinc else [])
    assert codes(obs["code"], MDC) == [mdc]


def test_site_and_location_flags_become_body_site_text() -> None:
    obs = observation([reading("body_temperature", 37.2, flags=("site:ear",))])
    validate(obs)
    assert obs["bodySite"] == {"text": "Measurement site: ear"}
    glucose = observation([reading("glucose", 98.0, flags=("location:alternate_site", "sample:capillary_plasma"))])
    assert glucose["bodySite"] == {"text": "Sample site: alternate site"}
    assert {"text": "Sample: capillary plasma."} in glucose["note"]


# -- special values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "absent", "reason"),
    [
        (float("nan"), None, "not-a-number"),
        (float("inf"), None, "positive-infinity"),
        (float("-inf"), None, "negative-infinity"),
        (None, "error", "error"),
        (None, "not-a-number", "not-a-number"),
    ],
)
def test_a_special_value_becomes_a_data_absent_reason(value, absent, reason) -> None:
    obs = observation([reading("spo2", value, absent_reason=absent)])
    validate(obs)
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": reason}
    ]
    assert "special value" in obs["note"][0]["text"]


def test_record_refuses_a_value_and_an_absent_reason_together() -> None:
    with pytest.raises(InvalidRecord) as err:
        reading("spo2", 97.0, absent_reason="error")
    assert err.value.field == "absent_reason"
    with pytest.raises(InvalidRecord):
        reading("spo2", None)
    with pytest.raises(InvalidRecord):
        reading("spo2", None, absent_reason="masked")


# -- measurement status flags -----------------------------------------------------------------


def test_plx_status_bits_map_as_the_phd_ig_maps_measurement_status() -> None:
    flags = ("questionable_measurement_detected", "early_estimated_data", "low_perfusion_detected")
    obs = observation([reading("spo2", 93.0, flags=flags)])
    validate(obs)
    assert [i["coding"][0]["code"] for i in obs["interpretation"]] == ["questionable", "early-indication"]
    assert all(
        i["coding"][0]["system"] == "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
        for i in obs["interpretation"]
    )
    assert {"text": "Low perfusion detected."} in obs["note"]
    assert obs["valueQuantity"]["value"] == 93.0


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("invalid_measurement_detected",), "error"),
        (("measurement_unavailable",), "not-performed"),
        (("measurement_unavailable", "invalid_measurement_detected"), "error"),
        (("invalid_measurement_detected", "measurement_unavailable"), "error"),
    ],
)
def test_a_value_the_device_called_invalid_is_withheld(flags, reason) -> None:
    obs = observation([reading("spo2", 97.0, flags=flags)])
    validate(obs)
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == reason
    assert any("withheld" in n["text"] for n in obs["note"])


@pytest.mark.parametrize("flag", ["data_for_testing", "data_for_demonstration"])
def test_test_and_demo_data_are_labelled_htest(flag) -> None:
    obs = observation([reading("spo2", 97.0, flags=(flag,))])
    validate(obs)
    assert obs["meta"]["security"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST", "display": "test health data"}
    ]


def test_clock_flags_explain_the_effective_time() -> None:
    obs = observation([reading("body_weight", 80.0, flags=("clock_skew",))])
    assert obs["note"] == [{"text": "The device clock was off; the time was corrected by the gateway."}]


def test_unknown_wire_flags_are_named_and_anything_else_is_never_echoed() -> None:
    obs = observation([reading("body_weight", 80.0, flags=("new_bit_7",))])
    assert obs["note"] == [{"text": "Device flag: new_bit_7."}]
    hostile = observation([reading("body_weight", 80.0, flags=("<img src=x onerror=alert(1)>", "**bold**"))])
    validate(hostile)
    assert hostile["note"] == [{"text": "Unrecognised device flag."}]


def test_bookkeeping_flags_add_nothing() -> None:
    obs = observation([reading("heart_rate", 70.0, flags=("sensor_contact:detected", "context_follows"))])
    assert "note" not in obs
    assert "interpretation" not in obs


# -- the blood-pressure panel -----------------------------------------------------------------


def bp(sys=120.0, dia=80.0, mean=93.0, *, seq=10, flags=(), at=T0, **kw):
    out = []
    for metric, value in (("bp_systolic", sys), ("bp_diastolic", dia), ("bp_mean", mean)):
        if value is not False:
            out.append(reading(metric, value, seq=seq, flags=flags, at=at, **kw))
            seq += 1
    return out


def components(obs):
    return {tuple(codes(c["code"], LOINC)): c for c in obs["component"]}


def test_bp_panel_with_systolic_diastolic_and_mean() -> None:
    obs = observation(bp())
    validate(obs)
    assert codes(obs["code"], LOINC) == ["85354-9"]
    assert codes(obs["code"], MDC) == ["150020"]
    assert obs["id"] == "bp.10.1772352000000000.agt-1"
    comps = components(obs)
    assert comps[("8480-6",)]["valueQuantity"]["value"] == 120.0
    assert comps[("8462-4",)]["valueQuantity"]["value"] == 80.0
    assert comps[("8478-0",)]["valueQuantity"]["value"] == 93.0
    assert [i["value"] for i in obs["identifier"]] == [f"agt-1/{s}/1772352000000000" for s in (10, 11, 12)]
    assert "valueQuantity" not in obs


def test_bp_panel_without_mean_has_two_components() -> None:
    obs = observation(bp(mean=False))
    validate(obs)
    assert set(components(obs)) == {("8480-6",), ("8462-4",)}


def test_bp_panel_missing_diastolic_says_unknown_not_nothing() -> None:
    # the edge dropped a special-value diastolic: systolic s, mean s+1
    obs = observation(bp(dia=False))
    validate(obs)
    dia = components(obs)[("8462-4",)]
    assert dia["dataAbsentReason"]["coding"][0]["code"] == "unknown"


def test_bp_component_special_value() -> None:
    members = (
        bp(dia=None, absent_reason=None)
        if False
        else [
            reading("bp_systolic", 120.0, seq=1),
            reading("bp_diastolic", float("nan"), seq=2),
        ]
    )
    obs = observation(members)
    validate(obs)
    assert components(obs)[("8462-4",)]["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    assert any(n["text"].startswith("Diastolic blood pressure: ") for n in obs["note"])


def test_bp_status_flags_are_notes_on_the_panel() -> None:
    obs = observation(bp(flags=("body_movement", "irregular_pulse", "cuff_too_loose")))
    validate(obs)
    assert [n["text"] for n in obs["note"]] == [
        "Body movement detected during the measurement.",
        "Irregular pulse detected.",
        "Cuff fit too loose.",
    ]


def test_a_group_that_is_not_one_measurement_is_refused() -> None:
    with pytest.raises(InvalidRecord):
        observation([])
    with pytest.raises(InvalidRecord):
        observation([reading("bp_systolic", 120.0, seq=1), reading("bp_systolic", 121.0, seq=2)])
    with pytest.raises(InvalidRecord):
        observation(
            [reading("bp_systolic", 120.0, seq=1), reading("bp_diastolic", 80.0, seq=2, at=T0 + timedelta(seconds=1))]
        )
    with pytest.raises(InvalidRecord):
        observation([reading("heart_rate", 70.0, seq=1), reading("heart_rate", 71.0, seq=2)])


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(readings())
def test_any_valid_reading_of_any_metric_yields_a_valid_resource(record: ReadingRecord) -> None:
    for group in group_readings([record]):
        validate(observation(group))


@settings(max_examples=100, deadline=None)
@given(
    st.tuples(readings("bp_systolic"), readings("bp_diastolic"), readings("bp_mean")),
    st.lists(st.booleans(), min_size=3, max_size=3).filter(any),
)
def test_any_blood_pressure_measurement_yields_a_valid_panel(members, keep) -> None:
    first = members[0]
    same = [
        ReadingRecord(
            first.patient_id,
            first.org_id,
            first.agent_id,
            first.device_id,
            first.seq % 2**62 + i,
            r.metric,
            r.value,
            r.unit,
            first.measured_at,
            r.received_at,
            r.device_time,
            first.flags,
            r.absent_reason,
        )
        for i, r in enumerate(m for m, k in zip(members, keep, strict=True) if k)
    ]
    groups = list(group_readings(same))
    assert len(groups) == 1
    obs = observation(groups[0])
    validate(obs)
    assert len(obs["component"]) >= 2

"""Patient, Device (PHD and gateway) and battery resources."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from clinician_api.fhir import (
    DeviceRecord,
    FhirNaming,
    InvalidRecord,
    PatientRecord,
    battery_observation,
    device_resource,
    gateway_device_resource,
    patient_resource,
)
from clinician_api.fhir.resources import PHD_DEVICE_PROFILE

from .conformance import validate

SEEN = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_patient() -> None:
    p = patient_resource(PatientRecord("pat-1", "org1", "Ada Lovelace", date(1815, 12, 10), "MRN-42"))
    validate(p)
    assert p["id"] == "pat-1"
    assert p["name"] == [{"text": "Ada Lovelace"}]
    assert p["birthDate"] == "1815-12-10"
    assert p["identifier"][0] == {"system": "urn:vigil:patient", "value": "pat-1"}
    assert p["identifier"][1]["type"]["coding"][0]["code"] == "MR"
    assert p["identifier"][1]["system"] == "urn:vigil:org:org1:mrn"
    assert p["managingOrganization"] == {"identifier": {"system": "urn:vigil:org", "value": "org1"}}


def test_patient_minimal_and_naming() -> None:
    p = patient_resource(PatientRecord("p:1", "o", "X"), FhirNaming("https://example.org/sid"))
    validate(p)
    assert p["id"] == "p.3A1"
    assert "birthDate" not in p
    assert len(p["identifier"]) == 1
    assert p["identifier"][0]["system"] == "https://example.org/sid:patient"


def full_device(**kw) -> DeviceRecord:
    base: dict[str, Any] = dict(
        device_id="00:1C:05:FF:E8:74",
        org_id="org1",
        agent_id="agt-1",
        patient_id="pat-1",
        profile="blood_pressure",
        name="Cuff",
        manufacturer="Acme",
        model="BP-1",
        serial="SN1",
        firmware="1.2.3",
        battery_pct=80,
        last_seen=SEEN,
    )
    return DeviceRecord(**(base | kw))


def test_phd_device_follows_the_phd_device_profile() -> None:
    d = device_resource(full_device())
    validate(d)
    assert d["meta"]["profile"] == [PHD_DEVICE_PROFILE]
    sysid, btmac, own = d["identifier"]
    assert sysid["type"]["coding"][0]["code"] == "SYSID"
    assert sysid["value"] == "00-00-00-00-00-00-00-00"  # BLE devices have no EUI-64 system id
    assert btmac == {
        "type": {
            "coding": [{"system": "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers", "code": "BTMAC"}]
        },
        "system": "http://hl7.org/fhir/sid/eui-48/bluetooth",
        "value": "00-1C-05-FF-E8-74",
    }
    assert own == {"system": "urn:vigil:device", "value": "00:1C:05:FF:E8:74"}
    assert d["type"]["coding"][0]["code"] == "65573"
    assert d["specialization"][0]["systemType"]["coding"][0]["code"] == "528391"
    assert (d["manufacturer"], d["modelNumber"], d["serialNumber"]) == ("Acme", "BP-1", "SN1")
    assert d["version"][0]["value"] == "1.2.3"
    assert d["version"][0]["type"]["coding"][0]["code"] == "531976"
    assert d["patient"] == {"reference": "Patient/pat-1"}


def test_eui64_device_id_is_the_system_id() -> None:
    d = device_resource(full_device(device_id="FE-ED-AB-EE-DE-AD-77-C3"))
    validate(d)
    assert d["identifier"][0]["value"] == "FE-ED-AB-EE-DE-AD-77-C3"
    assert len(d["identifier"]) == 2


@pytest.mark.parametrize(
    "changes", [{"manufacturer": None}, {"model": None}, {"profile": "heart_rate"}, {"profile": None}]
)
def test_phd_profile_is_claimed_only_when_its_required_elements_are_known(changes) -> None:
    d = device_resource(full_device(**changes))
    validate(d)
    assert "meta" not in d


def test_gateway_device() -> None:
    g = gateway_device_resource("agt_1", "org1")
    validate(g)
    assert g["id"] == "phg-agt.5F1"
    assert g["identifier"] == [{"system": "urn:vigil:agent", "value": "agt_1"}]


def test_battery_level_is_an_observation() -> None:
    b = battery_observation(full_device())
    assert b is not None
    validate(b)
    assert b["valueQuantity"] == {"value": 80, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert b["effectiveDateTime"] == "2026-03-01T08:00:00Z"
    assert battery_observation(full_device(battery_pct=None)) is None
    assert battery_observation(full_device(last_seen=None)) is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"battery_pct": 101}, "battery_pct"),
        ({"battery_pct": True}, "battery_pct"),
        ({"last_seen": datetime(2026, 1, 1)}, "last_seen"),
        ({"device_id": ""}, "device_id"),
        ({"model": ""}, "model"),
    ],
)
def test_device_record_refuses_bad_input(changes, field) -> None:
    with pytest.raises(InvalidRecord) as err:
        full_device(**changes)
    assert err.value.field == field


def test_patient_record_refuses_bad_input() -> None:
    with pytest.raises(InvalidRecord):
        PatientRecord("", "o", "x")
    with pytest.raises(InvalidRecord):
        PatientRecord("p", "o", "x", datetime(2000, 1, 1, tzinfo=UTC))

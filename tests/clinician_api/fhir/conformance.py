"""Validation of every resource the mapping emits: fhir.resources' R4B models plus the R4 rules
those models do not check (FHIR invariants obs-6/obs-7, the vital-signs profiles, id grammar).

fhir.resources 8 ships FHIR R5 by default and R4B (4.3.0) as a subpackage; there is no R4 (4.0.1)
model set for pydantic 2. Patient, Observation and Bundle are normative in R4 and unchanged in
R4B; Device is trial-use and the elements used here are the same in both.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

MODELS: dict[str, Any] = {"Patient": Patient, "Device": Device, "Observation": Observation, "Bundle": Bundle}
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
REFERENCE = re.compile(r"(Patient|Device|Observation)/[A-Za-z0-9\-.]{1,64}")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITALS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
# R4 vital-signs profiles: the LOINC code each requires and the UCUM codes its value may use.
PROFILE_RULES: dict[str, tuple[str, frozenset[str] | None]] = {
    "http://hl7.org/fhir/StructureDefinition/heartrate": ("8867-4", frozenset({"/min"})),
    "http://hl7.org/fhir/StructureDefinition/oxygensat": ("2708-6", frozenset({"%"})),
    "http://hl7.org/fhir/StructureDefinition/bodytemp": ("8310-5", frozenset({"Cel", "[degF]"})),
    "http://hl7.org/fhir/StructureDefinition/bodyweight": ("29463-7", frozenset({"kg", "g", "[lb_av]"})),
    "http://hl7.org/fhir/StructureDefinition/bodyheight": ("8302-2", frozenset({"cm", "[in_i]"})),
    "http://hl7.org/fhir/StructureDefinition/bmi": ("39156-5", frozenset({"kg/m2"})),
    "http://hl7.org/fhir/StructureDefinition/resprate": ("9279-1", frozenset({"/min"})),
    "http://hl7.org/fhir/StructureDefinition/bp": ("85354-9", None),
}


def _codes(concept: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in concept.get("coding", []) if c.get("system") == system]


def _check_quantity(q: dict[str, Any]) -> None:
    assert q["system"] == UCUM, q
    assert q["code"], q
    assert isinstance(q["value"], int | float)


def _check_value(element: dict[str, Any], where: str) -> None:
    has_value = any(k.startswith("value") for k in element)
    if "dataAbsentReason" in element:
        assert not has_value, f"obs-6 at {where}"
    if "valueQuantity" in element:
        _check_quantity(element["valueQuantity"])


def _check_observation(obs: dict[str, Any]) -> None:
    _check_value(obs, "Observation")
    own = {(c["system"], c["code"]) for c in obs["code"]["coding"]}
    for i, comp in enumerate(obs.get("component", [])):
        _check_value(comp, f"component[{i}]")
        if own & {(c["system"], c["code"]) for c in comp["code"]["coding"]}:
            assert not any(k.startswith("value") for k in comp), "obs-7"
    for ref in [obs["subject"], obs["device"], *obs.get("performer", [])]:
        assert REFERENCE.fullmatch(ref["reference"]), ref
    assert obs["status"] == "final"
    vital = any(
        _codes(c, "http://terminology.hl7.org/CodeSystem/observation-category") == ["vital-signs"]
        for c in obs.get("category", [])
    )
    profiles = obs.get("meta", {}).get("profile", [])
    if not vital:
        assert not profiles
        return
    # vital-signs profile: category, a LOINC code, subject, effective, value or DAR or components
    assert VITALS in profiles, "a vital-signs Observation SHALL claim the vital-signs profile"
    assert _codes(obs["code"], LOINC)
    assert obs["effectiveDateTime"]
    assert "valueQuantity" in obs or "dataAbsentReason" in obs or obs.get("component"), "vs-2"
    for comp in obs.get("component", []):
        assert "valueQuantity" in comp or "dataAbsentReason" in comp, "vs-3"
    (specific,) = [p for p in profiles if p != VITALS]
    loinc, units = PROFILE_RULES[specific]
    assert loinc in _codes(obs["code"], LOINC), (specific, obs["code"])
    if units is not None and "valueQuantity" in obs:
        assert obs["valueQuantity"]["code"] in units
    if specific.endswith("/bp"):
        comp_codes = [_codes(c["code"], LOINC) for c in obs["component"]]
        assert ["8480-6"] in comp_codes
        assert ["8462-4"] in comp_codes
        for comp in obs["component"]:
            if "valueQuantity" in comp:
                assert comp["valueQuantity"]["code"] == "mm[Hg]"


def validate(resource: dict[str, Any]) -> Any:
    """Validate ``resource``; returns the fhir.resources model instance."""
    text = json.dumps(resource, allow_nan=False)  # NaN/infinity are not JSON
    assert FHIR_ID.fullmatch(resource["id"]) if "id" in resource else resource["resourceType"] == "Bundle"
    model = MODELS[resource["resourceType"]].model_validate_json(text)
    if resource["resourceType"] == "Observation":
        _check_observation(resource)
    if resource["resourceType"] == "Bundle":
        for entry in resource.get("entry", []):
            validate(entry["resource"])
            assert entry["fullUrl"].endswith(f"/{entry['resource']['resourceType']}/{entry['resource']['id']}")
    return model

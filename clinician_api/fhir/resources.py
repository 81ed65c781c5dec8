"""FHIR R4 resources built from Vigil's records (pure functions returning JSON-ready dicts).

``patient_resource``, ``device_resource`` (a PHD), ``gateway_device_resource`` (the edge agent,
a PHG), ``battery_observation``, and ``observation`` for one group of readings as
:func:`clinician_api.fhir.grouping.group_readings` forms them: a single reading, or the readings
of one blood-pressure measurement, which become one 85354-9 panel. docs/fhir.md has the mapping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from clinician_api.fhir.codes import (
    ACT_REASON,
    BP_PANEL,
    CONTINUA_IDS,
    DATA_ABSENT,
    EUI48_BLUETOOTH,
    EUI64_SYSTEM_ID,
    GATEWAY_EXTENSION,
    MDC,
    MEASUREMENT_STATUS,
    METRIC_CODINGS,
    OBSERVATION_CATEGORY,
    PROFILE_SPECIALIZATIONS,
    UCUM,
    V2_0203,
    Code,
    flag_effect,
    glucose_coding,
    heart_rate_mdc,
)
from clinician_api.fhir.errors import InvalidRecord
from clinician_api.fhir.ids import (
    ReadingKey,
    battery_fhir_id,
    device_fhir_id,
    gateway_fhir_id,
    observation_fhir_id,
    patient_fhir_id,
)
from clinician_api.fhir.records import DeviceRecord, PatientRecord, ReadingRecord

__all__ = [
    "BP_METRICS",
    "DEFAULT_NAMING",
    "PHD_DEVICE_PROFILE",
    "FhirNaming",
    "Resource",
    "battery_observation",
    "device_resource",
    "fhir_instant",
    "gateway_device_resource",
    "observation",
    "patient_resource",
]

Resource = dict[str, Any]
BP_METRICS: Final = ("bp_systolic", "bp_diastolic", "bp_mean")
PHD_DEVICE_PROFILE: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdDevice"
_EUI48: Final = re.compile(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}")
_EUI64: Final = re.compile(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){7}")
_BATTERY: Final = Code(MDC, "67996", "MDC_ATTR_VAL_BATT_CHARGE")
_MDS_SIMPLE: Final = Code(MDC, "65573", "MDC_MOC_VMS_MDS_SIMP")
_FIRMWARE: Final = Code(MDC, "531976", "MDC_ID_PROD_SPEC_FW")
_VITAL_SIGNS: Final = {
    "coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
    "text": "Vital Signs",
}


@dataclass(frozen=True, slots=True)
class FhirNaming:
    """Identifier systems of Vigil's own ids (``{base}:patient`` ...); set ``base`` per deployment."""

    base: str = "urn:vigil"

    def system(self, kind: str) -> str:
        return f"{self.base}:{kind}"

    def mrn_system(self, org_id: str) -> str:
        return f"{self.base}:org:{org_id}:mrn"


DEFAULT_NAMING: Final = FhirNaming()


def fhir_instant(t: datetime) -> str:
    """A UTC FHIR dateTime/instant (``...Z``; microseconds only when non-zero)."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _concept(codes: Sequence[Code], text: str) -> dict[str, Any]:
    return {"coding": [c.coding() for c in codes], "text": text}


def _org_reference(org_id: str, naming: FhirNaming) -> dict[str, Any]:
    # No Organization resource is emitted: a logical reference by identifier.
    return {"identifier": {"system": naming.system("org"), "value": org_id}}


def patient_resource(patient: PatientRecord, naming: FhirNaming = DEFAULT_NAMING) -> Resource:
    identifiers: list[dict[str, Any]] = [{"system": naming.system("patient"), "value": patient.patient_id}]
    if patient.mrn is not None:
        identifiers.append(
            {
                "type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}]},
                "system": naming.mrn_system(patient.org_id),
                "value": patient.mrn,
            }
        )
    out: Resource = {
        "resourceType": "Patient",
        "id": patient_fhir_id(patient.patient_id),
        "identifier": identifiers,
        "active": True,
        "name": [{"text": patient.display_name}],
        "managingOrganization": _org_reference(patient.org_id, naming),
    }
    if patient.birth_date is not None:
        out["birthDate"] = patient.birth_date.isoformat()
    return out


def _dashed(address: str) -> str:
    return "-".join(address.replace(":", "-").upper().split("-"))


def _continua_identifier(kind: str, system: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": CONTINUA_IDS, "code": kind}]}, "system": system, "value": value}


def device_resource(device: DeviceRecord, naming: FhirNaming = DEFAULT_NAMING) -> Resource:
    """The measuring device, shaped by the PHD IG's PhdDevice profile.

    The profile is claimed in ``meta.profile`` only when its required elements are known
    (manufacturer, model and an IEEE specialization for the device's profile).
    """
    identifiers = [
        _continua_identifier(
            "SYSID",
            EUI64_SYSTEM_ID,
            _dashed(device.device_id) if _EUI64.fullmatch(device.device_id) else "00-00-00-00-00-00-00-00",
        )
    ]
    if _EUI48.fullmatch(device.device_id):
        identifiers.append(_continua_identifier("BTMAC", EUI48_BLUETOOTH, _dashed(device.device_id)))
    identifiers.append({"system": naming.system("device"), "value": device.device_id})
    out: Resource = {
        "resourceType": "Device",
        "id": device_fhir_id(device.device_id),
        "identifier": identifiers,
        "type": _concept([_MDS_SIMPLE], "MDC_MOC_VMS_MDS_SIMP: Continua Personal Health Device"),
        "owner": _org_reference(device.org_id, naming),
    }
    specialization = PROFILE_SPECIALIZATIONS.get(device.profile or "")
    if device.manufacturer is not None and device.model is not None and specialization is not None:
        out["meta"] = {"profile": [PHD_DEVICE_PROFILE]}
    if specialization is not None:
        out["specialization"] = [{"systemType": _concept([specialization], specialization.display or "")}]
    if device.manufacturer is not None:
        out["manufacturer"] = device.manufacturer
    if device.model is not None:
        out["modelNumber"] = device.model
    if device.serial is not None:
        out["serialNumber"] = device.serial
    if device.name is not None:
        out["deviceName"] = [{"name": device.name, "type": "user-friendly-name"}]
    if device.firmware is not None:
        out["version"] = [
            {"type": _concept([_FIRMWARE], "MDC_ID_PROD_SPEC_FW: firmware revision"), "value": device.firmware}
        ]
    if device.patient_id is not None:
        out["patient"] = {"reference": f"Patient/{patient_fhir_id(device.patient_id)}"}
    return out


def gateway_device_resource(agent_id: str, org_id: str, naming: FhirNaming = DEFAULT_NAMING) -> Resource:
    """The edge agent as the PHD IG's Personal Health Gateway (referenced by every Observation)."""
    return {
        "resourceType": "Device",
        "id": gateway_fhir_id(agent_id),
        "identifier": [{"system": naming.system("agent"), "value": agent_id}],
        "deviceName": [{"name": "Vigil edge agent", "type": "model-name"}],
        "owner": _org_reference(org_id, naming),
    }


def battery_observation(device: DeviceRecord) -> Resource | None:
    """The device's last reported battery level (PHD IG: an Observation, not a Device element)."""
    if device.battery_pct is None or device.last_seen is None:
        return None
    out: Resource = {
        "resourceType": "Observation",
        "id": battery_fhir_id(device.device_id),
        "status": "final",
        "code": _concept([_BATTERY], "Battery level"),
        "effectiveDateTime": fhir_instant(device.last_seen),
        "valueQuantity": {"value": device.battery_pct, "unit": "%", "system": UCUM, "code": "%"},
        "device": {"reference": f"Device/{device_fhir_id(device.device_id)}"},
    }
    if device.patient_id is not None:
        out["subject"] = {"reference": f"Patient/{patient_fhir_id(device.patient_id)}"}
    return out


@dataclass(slots=True)
class _Conditions:
    """What a reading's flags add to its Observation (see codes.FLAG_EFFECTS)."""

    interpretation: list[str] = field(default_factory=list)
    absent: str | None = None
    test_data: bool = False
    notes: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, flags: Sequence[str]) -> _Conditions:
        out = cls()
        for flag in dict.fromkeys(flags):
            effect = flag_effect(flag)
            kind = effect.kind
            if kind == "interpretation" and effect.code is not None:
                out.interpretation.append(effect.code)
            elif kind == "absent" and effect.code is not None:
                # "error" (invalid) outranks "not-performed" (unavailable).
                out.absent = "error" if "error" in (out.absent, effect.code) else effect.code
            elif kind == "security":
                out.test_data = True
            elif kind == "body_site":
                out.sites.append(effect.text)
                continue
            if kind != "ignore" and effect.text:
                out.notes.append(effect.text)
        return out


def _absent(code: str) -> dict[str, Any]:
    return {"coding": [{"system": DATA_ABSENT, "code": code}], "text": code.replace("-", " ")}


def _quantity(value: float, unit: str, factor: int) -> dict[str, Any]:
    # The stored float's shortest repr is its decimal precision; scale exactly (1.1 m is 110 cm).
    number = float(Decimal(repr(value)) * factor) if factor != 1 else value
    if not math.isfinite(number):
        raise InvalidRecord("ReadingRecord", "value", "not representable in the FHIR unit")
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _value(reading: ReadingRecord | None, conditions: _Conditions, unit: str, factor: int) -> dict[str, Any]:
    """``{"valueQuantity": ...}`` or ``{"dataAbsentReason": ...}`` (never both: FHIR obs-6)."""
    if reading is None:
        return {"dataAbsentReason": _absent("unknown")}
    if reading.value is None:
        return {"dataAbsentReason": _absent(reading.absent_reason or "unknown")}
    if conditions.absent is not None:
        return {"dataAbsentReason": _absent(conditions.absent)}
    return {"valueQuantity": _quantity(reading.value, unit, factor)}


def _reading_identifier(reading: ReadingRecord, naming: FhirNaming) -> dict[str, Any]:
    key = ReadingKey(reading.agent_id, reading.seq, reading.measured_at)
    return {"system": naming.system("reading"), "value": f"{reading.agent_id}/{reading.seq}/{key.micros}"}


def observation(
    group: Sequence[ReadingRecord],
    *,
    naming: FhirNaming = DEFAULT_NAMING,
    device_profiles: Mapping[str, str] | None = None,
) -> Resource:
    """One Observation: a single reading, or the readings of one BP measurement as a panel.

    ``device_profiles`` (device id -> Vigil profile) codes a pulse rate by the device that
    measured it (a cuff's or an oximeter's pulse rate, not an ECG heart rate).
    """
    if not group:
        raise InvalidRecord("ReadingRecord", "group", "an Observation needs at least one reading")
    first = group[0]
    same = all(
        (r.patient_id, r.agent_id, r.device_id, r.measured_at)
        == (first.patient_id, first.agent_id, first.device_id, first.measured_at)
        for r in group
    )
    if first.metric in BP_METRICS:
        if not same or any(r.metric not in BP_METRICS for r in group) or len({r.metric for r in group}) != len(group):
            raise InvalidRecord("ReadingRecord", "group", "not the readings of one blood-pressure measurement")
        return _bp_panel(sorted(group, key=lambda r: r.seq), naming)
    if len(group) != 1:
        raise InvalidRecord("ReadingRecord", "group", "only blood pressure readings form a group")
    profile = (device_profiles or {}).get(first.device_id)
    return _numeric(first, naming, profile)


def _common(readings: Sequence[ReadingRecord], conditions: _Conditions, naming: FhirNaming) -> Resource:
    first = readings[0]
    out: Resource = {
        "resourceType": "Observation",
        "identifier": [_reading_identifier(r, naming) for r in readings],
        "status": "final",
    }
    if conditions.test_data:
        out["meta"] = {"security": [{"system": ACT_REASON, "code": "HTEST", "display": "test health data"}]}
    out["extension"] = [
        {"url": GATEWAY_EXTENSION, "valueReference": {"reference": f"Device/{gateway_fhir_id(first.agent_id)}"}}
    ]
    patient = {"reference": f"Patient/{patient_fhir_id(first.patient_id)}"}
    out["subject"] = patient
    out["effectiveDateTime"] = fhir_instant(first.measured_at)
    received = [r.received_at for r in readings if r.received_at is not None]
    if received:
        out["issued"] = fhir_instant(max(received))
    out["performer"] = [patient]
    out["device"] = {"reference": f"Device/{device_fhir_id(first.device_id)}"}
    return out


def _finish(out: Resource, conditions: _Conditions) -> Resource:
    if conditions.interpretation:
        out["interpretation"] = [
            {"coding": [{"system": MEASUREMENT_STATUS, "code": code}]}
            for code in dict.fromkeys(conditions.interpretation)
        ]
    if conditions.sites:
        out["bodySite"] = {"text": "; ".join(dict.fromkeys(conditions.sites))}
    if conditions.notes:
        out["note"] = [{"text": text} for text in dict.fromkeys(conditions.notes)]
    return out


def _profile_meta(out: Resource, profile: str | None) -> None:
    if profile is None:
        return
    meta = out.setdefault("meta", {})
    meta["profile"] = ["http://hl7.org/fhir/StructureDefinition/vitalsigns", profile]


def _numeric(reading: ReadingRecord, naming: FhirNaming, device_profile: str | None) -> Resource:
    coding = METRIC_CODINGS[reading.metric]
    conditions = _Conditions.of(reading.flags)
    loinc, mdc = coding.loinc, coding.mdc
    if reading.metric == "heart_rate":
        mdc = heart_rate_mdc(device_profile)
    elif reading.metric == "glucose":
        loinc, mdc = glucose_coding(tuple(reading.flags))
    out = _common([reading], conditions, naming)
    out["id"] = observation_fhir_id(ReadingKey(reading.agent_id, reading.seq, reading.measured_at))
    _profile_meta(out, coding.profile)
    if coding.vital_sign:
        out["category"] = [_VITAL_SIGNS]
    out["code"] = _concept([*loinc, *([mdc] if mdc is not None else [])], coding.text)
    out.update(_value(reading, conditions, coding.unit, coding.factor))
    if reading.value is None and reading.absent_reason is not None:
        conditions.notes.insert(0, _special_value_note(reading.absent_reason))
    elif reading.value is not None and conditions.absent is not None:
        conditions.notes.append("The value is withheld because of the device's report.")
    return _order(_finish(out, conditions))


def _special_value_note(reason: str) -> str:
    return f"The device reported a special value instead of a number ({reason})."


def _bp_panel(members: Sequence[ReadingRecord], naming: FhirNaming) -> Resource:
    by_metric = {r.metric: r for r in members}
    flags = [f for r in members for f in r.flags]
    conditions = _Conditions.of(flags)
    out = _common(members, conditions, naming)
    out["id"] = observation_fhir_id(ReadingKey(members[0].agent_id, members[0].seq, members[0].measured_at), "panel")
    _profile_meta(out, BP_PANEL.profile)
    out["category"] = [_VITAL_SIGNS]
    out["code"] = _concept([*BP_PANEL.loinc, *([BP_PANEL.mdc] if BP_PANEL.mdc else [])], BP_PANEL.text)
    components = []
    for metric in BP_METRICS:
        reading = by_metric.get(metric)
        if reading is None and metric == "bp_mean":
            continue  # mean arterial pressure is optional in the panel
        coding = METRIC_CODINGS[metric]
        component: dict[str, Any] = {
            "code": _concept([*coding.loinc, *([coding.mdc] if coding.mdc else [])], coding.text)
        }
        component.update(_value(reading, conditions, coding.unit, coding.factor))
        components.append(component)
        if reading is not None and reading.value is None and reading.absent_reason is not None:
            conditions.notes.append(f"{coding.text}: " + _special_value_note(reading.absent_reason))
    out["component"] = components
    if conditions.absent is not None:
        conditions.notes.append("The values are withheld because of the device's report.")
    return _order(_finish(out, conditions))


_ORDER: Final = (
    "resourceType",
    "id",
    "meta",
    "extension",
    "identifier",
    "status",
    "category",
    "code",
    "subject",
    "effectiveDateTime",
    "issued",
    "performer",
    "valueQuantity",
    "dataAbsentReason",
    "interpretation",
    "note",
    "bodySite",
    "device",
    "component",
)


def _order(out: Resource) -> Resource:
    """FHIR's element order (JSON does not require it; readers and diffs like it)."""
    return {k: out[k] for k in _ORDER if k in out} | {k: v for k, v in out.items() if k not in _ORDER}

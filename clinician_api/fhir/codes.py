"""Code systems, the metric-to-FHIR coding table and the status-flag table (pure data).

Sources: the HL7 Personal Health Device implementation guide (PHD IG, STU 1/2, FHIR R4; its
``BaseObservationProfile`` measurement-status table, its ``PhdDevice`` profile and its examples),
the FHIR R4 vital-signs profiles, and rpm_core's metric catalogue, whose LOINC, MDC and UCUM codes
this table extends (tests check that it agrees with the catalogue). docs/fhir.md explains each
choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "ACT_REASON",
    "BP_PANEL",
    "CONTINUA_IDS",
    "DATA_ABSENT",
    "EUI48_BLUETOOTH",
    "EUI64_SYSTEM_ID",
    "FLAG_EFFECTS",
    "GATEWAY_EXTENSION",
    "LOINC",
    "MDC",
    "MEASUREMENT_STATUS",
    "METRIC_CODINGS",
    "OBSERVATION_CATEGORY",
    "PROFILE_SPECIALIZATIONS",
    "UCUM",
    "V2_0203",
    "Code",
    "FlagEffect",
    "MetricCoding",
    "flag_effect",
    "glucose_coding",
    "heart_rate_mdc",
    "metrics_for_code",
]

LOINC: Final = "http://loinc.org"
MDC: Final = "urn:iso:std:iso:11073:10101"
UCUM: Final = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MEASUREMENT_STATUS: Final = "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONTINUA_IDS: Final = "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers"
EUI64_SYSTEM_ID: Final = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
EUI48_BLUETOOTH: Final = "http://hl7.org/fhir/sid/eui-48/bluetooth"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
GATEWAY_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
_VS: Final = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True, slots=True)
class Code:
    """One coding; ``display`` only where it is the code system's own text."""

    system: str
    code: str
    display: str | None = None

    def coding(self) -> dict[str, str]:
        out = {"system": self.system, "code": self.code}
        if self.display is not None:
            out["display"] = self.display
        return out


def _loinc(code: str, display: str | None = None) -> Code:
    return Code(LOINC, code, display)


def _mdc(code: int, refid: str) -> Code:
    return Code(MDC, str(code), refid)


@dataclass(frozen=True, slots=True)
class MetricCoding:
    """How one catalogue metric is coded in FHIR.

    ``unit`` is the UCUM code in FHIR (``factor`` converts the stored value to it: body height is
    stored in m, the vital-signs profile wants cm). ``profile`` is the FHIR R4 vital-signs profile
    the Observation conforms to (``None``: not a vital sign, no vital-signs category).
    """

    metric: str
    text: str
    loinc: tuple[Code, ...]
    mdc: Code | None
    unit: str
    factor: int = 1
    profile: str | None = None

    @property
    def vital_sign(self) -> bool:
        return self.profile is not None


BP_PANEL: Final = MetricCoding(
    "bp_panel",
    "Blood pressure",
    (_loinc("85354-9", "Blood pressure panel with all children optional"),),
    _mdc(150020, "MDC_PRESS_BLD_NONINV"),
    "mm[Hg]",
    profile=_VS + "bp",
)

METRIC_CODINGS: Final = MappingProxyType(
    {
        c.metric: c
        for c in (
            MetricCoding(
                "heart_rate",
                "Heart rate",
                (_loinc("8867-4", "Heart rate"),),
                _mdc(147842, "MDC_ECG_HEART_RATE"),
                "/min",
                profile=_VS + "heartrate",
            ),
            MetricCoding("rr_interval", "R-R interval", (_loinc("8637-1"),), None, "ms"),
            MetricCoding(
                "spo2",
                "Oxygen saturation (pulse oximetry)",
                (
                    _loinc("2708-6", "Oxygen saturation in Arterial blood"),
                    _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
                ),
                _mdc(150456, "MDC_PULS_OXIM_SAT_O2"),
                "%",
                profile=_VS + "oxygensat",
            ),
            MetricCoding(
                "bp_systolic",
                "Systolic blood pressure",
                (_loinc("8480-6", "Systolic blood pressure"),),
                _mdc(150021, "MDC_PRESS_BLD_NONINV_SYS"),
                "mm[Hg]",
            ),
            MetricCoding(
                "bp_diastolic",
                "Diastolic blood pressure",
                (_loinc("8462-4", "Diastolic blood pressure"),),
                _mdc(150022, "MDC_PRESS_BLD_NONINV_DIA"),
                "mm[Hg]",
            ),
            MetricCoding(
                "bp_mean",
                "Mean blood pressure",
                (_loinc("8478-0", "Mean blood pressure"),),
                _mdc(150023, "MDC_PRESS_BLD_NONINV_MEAN"),
                "mm[Hg]",
            ),
            MetricCoding(
                "body_temperature",
                "Body temperature",
                (_loinc("8310-5", "Body temperature"),),
                _mdc(150364, "MDC_TEMP_BODY"),
                "Cel",
                profile=_VS + "bodytemp",
            ),
            MetricCoding(
                "body_weight",
                "Body weight",
                (_loinc("29463-7", "Body weight"),),
                _mdc(188736, "MDC_MASS_BODY_ACTUAL"),
                "kg",
                profile=_VS + "bodyweight",
            ),
            MetricCoding(
                "bmi",
                "Body mass index",
                (_loinc("39156-5", "Body mass index (BMI) [Ratio]"),),
                _mdc(188752, "MDC_RATIO_MASS_BODY_LEN_SQ"),
                "kg/m2",
                profile=_VS + "bmi",
            ),
            MetricCoding(
                "body_height",
                "Body height",
                (_loinc("8302-2", "Body height"),),
                _mdc(188740, "MDC_LEN_BODY_ACTUAL"),
                "cm",
                factor=100,
                profile=_VS + "bodyheight",
            ),
            MetricCoding(
                "glucose",
                "Glucose (capillary, glucometer)",
                (_loinc("41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer"),),
                _mdc(160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
                "mg/dL",
            ),
            # Reported by a glucose meter in its measurement context (0x2A34): a laboratory-style
            # result, not a vital sign (no vital-signs profile or category).
            MetricCoding(
                "hba1c",
                "Hemoglobin A1c",
                (_loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),),
                _mdc(160220, "MDC_CONC_HBA1C"),
                "%",
            ),
            MetricCoding(
                "hba1c",
                "Hemoglobin A1c",
                (_loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),),
                _mdc(160220, "MDC_CONC_HBA1C"),
                "%",
            ),
            MetricCoding(
                "respiratory_rate",
                "Respiratory rate",
                (_loinc("9279-1", "Respiratory rate"),),
                _mdc(151562, "MDC_RESP_RATE"),
                "/min",
                profile=_VS + "resprate",
            ),
        )
    }
)

_BP_METRICS: Final = frozenset({"bp_systolic", "bp_diastolic", "bp_mean"})

_ECG_HEART_RATE: Final = _mdc(147842, "MDC_ECG_HEART_RATE")
# Pulse rate is coded by the device that measured it, as the PHD IG's examples do.
_PULSE_BY_PROFILE: Final = MappingProxyType(
    {
        "blood_pressure": _mdc(149546, "MDC_PULS_RATE_NON_INV"),
        "pulse_oximeter": _mdc(149530, "MDC_PULS_OXIM_PULS_RATE"),
    }
)


def heart_rate_mdc(profile: str | None) -> Code:
    """The MDC code of a pulse/heart rate from a device of ``profile`` (ECG heart rate otherwise)."""
    code = _PULSE_BY_PROFILE.get(profile or "")
    if code is not None:
        return code
    return _ECG_HEART_RATE


# Glucose: the Bluetooth sample type selects the MDC term (partition SCADA, 2 << 16) and the LOINC
# code; capillary whole blood (and no sample type) is the catalogue's coding.
_GLUCOSE_BY_SAMPLE: Final = MappingProxyType(
    {
        "sample:capillary_plasma": (
            _loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            _mdc(160188, "MDC_CONC_GLU_CAPILLARY_PLASMA"),
        ),
        "sample:venous_whole_blood": (
            _loinc("2339-0", "Glucose [Mass/volume] in Blood"),
            _mdc(160192, "MDC_CONC_GLU_VENOUS_WHOLEBLOOD"),
        ),
        "sample:venous_plasma": (
            _loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            _mdc(160196, "MDC_CONC_GLU_VENOUS_PLASMA"),
        ),
        "sample:arterial_whole_blood": (
            _loinc("2339-0", "Glucose [Mass/volume] in Blood"),
            _mdc(160200, "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD"),
        ),
        "sample:arterial_plasma": (
            _loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            _mdc(160204, "MDC_CONC_GLU_ARTERIAL_PLASMA"),
        ),
        "sample:undetermined_whole_blood": (
            _loinc("2339-0", "Glucose [Mass/volume] in Blood"),
            _mdc(160020, "MDC_CONC_GLU_GEN"),
        ),
        "sample:undetermined_plasma": (
            _loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            _mdc(160020, "MDC_CONC_GLU_GEN"),
        ),
        "sample:interstitial_fluid": (None, _mdc(160212, "MDC_CONC_GLU_ISF")),
    }
)


def glucose_coding(flags: tuple[str, ...]) -> tuple[tuple[Code, ...], Code | None]:
    """LOINC codes and MDC code of a glucose reading with ``flags``."""
    for flag in flags:
        hit = _GLUCOSE_BY_SAMPLE.get(flag)
        if hit is not None:
            loinc, mdc = hit
            return ((loinc,) if loinc is not None else ()), mdc
    coding = METRIC_CODINGS["glucose"]
    return coding.loinc, coding.mdc


# IEEE 11073-20601 specialization (MDC partition INFRA, 8 << 16) per Vigil device profile; the BLE
# Heart Rate profile has no specialization (PhdDevice requires one: such a device claims no profile).
PROFILE_SPECIALIZATIONS: Final = MappingProxyType(
    {
        "pulse_oximeter": _mdc(528388, "MDC_DEV_SPEC_PROFILE_PULS_OXIM"),
        "blood_pressure": _mdc(528391, "MDC_DEV_SPEC_PROFILE_BPM"),
        "thermometer": _mdc(528392, "MDC_DEV_SPEC_PROFILE_TEMP"),
        "weight_scale": _mdc(528399, "MDC_DEV_SPEC_PROFILE_SCALE"),
        "glucose": _mdc(528401, "MDC_DEV_SPEC_PROFILE_GLUCOSE"),
    }
)


EffectKind = Literal["interpretation", "absent", "security", "note", "body_site", "coding", "ignore"]


@dataclass(frozen=True, slots=True)
class FlagEffect:
    """What one stored flag does to an Observation.

    ``interpretation``: a code of the PoCD measurement-status code system (the PHD IG's table);
    ``absent``: the value is withheld and ``code`` is the data-absent-reason (the device itself
    said the value is invalid or unavailable; FHIR forbids a value with a dataAbsentReason);
    ``security``: ``meta.security`` HTEST (test or demonstration data); ``note``: a sentence in
    ``Observation.note``; ``body_site``: ``bodySite.text``; ``coding``: chooses the code (glucose
    sample type); ``ignore``: nothing clinical (bookkeeping of the decoder). ``text`` is the
    clinician-facing sentence (also added as a note for interpretation, absent and security).
    """

    kind: EffectKind
    text: str = ""
    code: str | None = None


def _n(text: str) -> FlagEffect:
    return FlagEffect("note", text)


_FLAGS: dict[str, FlagEffect] = {
    # Blood Pressure Measurement Status (0x2A35); the PHD IG reports these bits as a separate
    # BITs observation (MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS); Vigil keeps them as notes.
    "body_movement": _n("Body movement detected during the measurement."),
    "cuff_too_loose": _n("Cuff fit too loose."),
    "irregular_pulse": _n("Irregular pulse detected."),
    "pulse_rate_above_range": _n("Pulse rate above the device's range."),
    "pulse_rate_below_range": _n("Pulse rate below the device's range."),
    "improper_position": _n("Improper measurement position."),
    # PLX Measurement Status (0x2A5E/0x2A5F), mapped as the PHD IG maps 11073 Measurement-Status.
    "measurement_ongoing": FlagEffect("interpretation", "Measurement still ongoing.", "msmt-ongoing"),
    "early_estimated_data": FlagEffect("interpretation", "Early estimate.", "early-indication"),
    "validated_data": FlagEffect("interpretation", "Validated data.", "validated-data"),
    "fully_qualified_data": _n("Fully qualified data."),
    "data_from_measurement_storage": _n("Taken from the device's measurement storage."),
    "data_for_demonstration": FlagEffect("security", "Demonstration data, not a patient measurement."),
    "data_for_testing": FlagEffect("security", "Test data, not a patient measurement."),
    "calibration_ongoing": FlagEffect("interpretation", "Calibration ongoing.", "calibration-ongoing"),
    "measurement_unavailable": FlagEffect(
        "absent", "The device reported the measurement unavailable.", "not-performed"
    ),
    "questionable_measurement_detected": FlagEffect("interpretation", "Questionable measurement.", "questionable"),
    "invalid_measurement_detected": FlagEffect("absent", "The device flagged the measurement invalid.", "error"),
    # PLX Device and Sensor Status.
    "extended_display_update_ongoing": FlagEffect("ignore"),
    "equipment_malfunction_detected": _n("Equipment malfunction detected."),
    "signal_processing_irregularity_detected": _n("Signal processing irregularity detected."),
    "inadequate_signal_detected": _n("Inadequate signal detected."),
    "poor_signal_detected": _n("Poor signal detected."),
    "low_perfusion_detected": _n("Low perfusion detected."),
    "erratic_signal_detected": _n("Erratic signal detected."),
    "nonpulsatile_signal_detected": _n("Non-pulsatile signal detected."),
    "questionable_pulse_detected": _n("Questionable pulse detected."),
    "signal_analysis_ongoing": _n("Signal analysis ongoing."),
    "sensor_interference_detected": _n("Sensor interference detected."),
    "sensor_unconnected_to_user": _n("Sensor not connected to the patient."),
    "unknown_sensor_connected": _n("Unknown sensor connected."),
    "sensor_displaced": _n("Sensor displaced."),
    "sensor_malfunctioning": _n("Sensor malfunctioning."),
    "sensor_disconnected": _n("Sensor disconnected."),
    # Glucose Sensor Status Annunciation (0x2A18).
    "device_battery_low": _n("Device battery low at the time of measurement."),
    "sensor_malfunction": _n("Sensor malfunction."),
    "sample_size_insufficient": _n("Sample size insufficient."),
    "strip_insertion_error": _n("Strip insertion error."),
    "strip_type_incorrect": _n("Strip type incorrect for the device."),
    "sensor_result_too_high": _n("Result higher than the device can process."),
    "sensor_result_too_low": _n("Result lower than the device can process."),
    "sensor_temperature_too_high": _n("Sensor temperature too high for a valid test."),
    "sensor_temperature_too_low": _n("Sensor temperature too low for a valid test."),
    "sensor_read_interrupted": _n("Sensor read interrupted (strip pulled too soon)."),
    "general_device_fault": _n("General device fault."),
    "time_fault": _n("Device time fault: the time of measurement may be wrong."),
    "context_follows": FlagEffect("ignore"),
    # Weight scale: 0xFFFF weight.
    "measurement_unsuccessful": FlagEffect("absent", "The device reported the measurement unsuccessful.", "error"),
    # Clocks (edge_agent.devices.reading, edge_agent.devices.pulse_oximeter, edge_agent.timefix).
    "device_clock_not_set": _n("The device clock was not set; the time is the device's report."),
    "device_time_incomplete": _n("The device did not know the date; the time is when the gateway received it."),
    "clock_skew": _n("The device clock was off; the time was corrected by the gateway."),
}
FLAG_EFFECTS: Final = MappingProxyType(_FLAGS)

_WIRE_FLAG: Final = re.compile(r"[a-z0-9_:.-]{1,48}")  # rpm_core.reading.FLAG_PATTERN
_SITE_TEXT: Final = {
    "site:": "Measurement site: ",
    "location:": "Sample site: ",
}


def flag_effect(flag: str) -> FlagEffect:
    """The effect of one stored flag; an unknown flag becomes a note naming it."""
    effect = FLAG_EFFECTS.get(flag)
    if effect is not None:
        return effect
    if _WIRE_FLAG.fullmatch(flag) is None:
        # Not a flag the wire contract lets through: never echo it into clinical text.
        return _n("Unrecognised device flag.")
    if flag.startswith("sensor_contact:"):
        return FlagEffect("ignore")
    if flag.startswith("sample:"):
        return FlagEffect("coding", "Sample: " + flag.removeprefix("sample:").replace("_", " ") + ".")
    for prefix, label in _SITE_TEXT.items():
        if flag.startswith(prefix):
            return FlagEffect("body_site", label + flag.removeprefix(prefix).replace("_", " "))
    return _n(f"Device flag: {flag}.")


def metrics_for_code(system: str | None, code: str) -> frozenset[str]:
    """The catalogue metrics whose Observations have ``Observation.code`` ``system|code``.

    For a FHIR ``code`` search: the BP panel (85354-9, MDC 150020) stands for the three pressure
    metrics (they are emitted only inside the panel); 8480-6 and the other component codes match
    no Observation.code, as FHIR's ``code`` parameter does not search components.
    """
    found: set[str] = set()
    for coding in (BP_PANEL, *METRIC_CODINGS.values()):
        codes = [*coding.loinc, *([coding.mdc] if coding.mdc else [])]
        if coding.metric == "heart_rate":
            codes.extend(_PULSE_BY_PROFILE.values())
        if coding.metric == "glucose":
            for loinc, mdc in _GLUCOSE_BY_SAMPLE.values():
                codes.extend(c for c in (loinc, mdc) if c is not None)
        if any(c.code == code and system in (None, c.system) for c in codes):
            if coding.metric == "bp_panel":
                found |= _BP_METRICS
            elif coding.metric not in _BP_METRICS:
                found.add(coding.metric)
    return frozenset(found)

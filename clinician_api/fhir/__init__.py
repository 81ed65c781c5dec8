"""FHIR R4 resources for Vigil's data, following the HL7 Personal Health Device IG (pure, no I/O).

Inputs are plain records (:mod:`.records`) that the API's routes fill from the store; outputs are
JSON-ready dicts. Nothing here imports the store, a database driver or the web framework: the
routes own the I/O, this package owns the mapping. See docs/fhir.md.
"""

from __future__ import annotations

from clinician_api.fhir.bundle import CURSOR_PARAM, ObservationPage, page_observations, search_url, searchset
from clinician_api.fhir.codes import metrics_for_code
from clinician_api.fhir.errors import FhirError, InvalidFhirId, InvalidRecord
from clinician_api.fhir.export import NDJSON_MEDIA_TYPE, everything_ndjson, ndjson_line
from clinician_api.fhir.grouping import group_readings
from clinician_api.fhir.ids import (
    ObservationRef,
    ReadingKey,
    device_fhir_id,
    gateway_fhir_id,
    observation_fhir_id,
    parse_device_fhir_id,
    parse_observation_fhir_id,
    parse_patient_fhir_id,
    patient_fhir_id,
)
from clinician_api.fhir.records import DeviceRecord, PatientRecord, ReadingRecord
from clinician_api.fhir.resources import (
    DEFAULT_NAMING,
    FhirNaming,
    Resource,
    battery_observation,
    device_resource,
    gateway_device_resource,
    observation,
    patient_resource,
)

__all__ = [
    "CURSOR_PARAM",
    "DEFAULT_NAMING",
    "NDJSON_MEDIA_TYPE",
    "DeviceRecord",
    "FhirError",
    "FhirNaming",
    "InvalidFhirId",
    "InvalidRecord",
    "ObservationPage",
    "ObservationRef",
    "PatientRecord",
    "ReadingKey",
    "ReadingRecord",
    "Resource",
    "battery_observation",
    "device_fhir_id",
    "device_resource",
    "everything_ndjson",
    "gateway_device_resource",
    "gateway_fhir_id",
    "group_readings",
    "metrics_for_code",
    "ndjson_line",
    "observation",
    "observation_fhir_id",
    "page_observations",
    "parse_device_fhir_id",
    "parse_observation_fhir_id",
    "parse_patient_fhir_id",
    "patient_fhir_id",
    "patient_resource",
    "search_url",
    "searchset",
]

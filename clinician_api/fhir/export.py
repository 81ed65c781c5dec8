"""A patient's ``$everything``-style export as NDJSON, streamed.

One resource per line (``application/fhir+ndjson``), in this order: the Patient, the gateway
Devices (one per edge agent of the patient's devices), the measuring Devices, their battery-level
Observations, then the reading Observations in the order the readings come. Nothing is collected:
each line is produced when the caller asks for it, so a route can stream years of readings from a
server-side cursor with memory bounded by one blood-pressure group.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

from clinician_api.fhir.grouping import group_readings
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

__all__ = ["NDJSON_MEDIA_TYPE", "everything_ndjson", "ndjson_line"]

NDJSON_MEDIA_TYPE = "application/fhir+ndjson"


def ndjson_line(resource: Resource) -> str:
    """One compact JSON line; NaN or infinity anywhere is a bug and raises ``ValueError``."""
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"


def everything_ndjson(
    patient: PatientRecord,
    devices: Iterable[DeviceRecord],
    readings: Iterable[ReadingRecord],
    *,
    naming: FhirNaming = DEFAULT_NAMING,
) -> Iterator[str]:
    """The export's lines. ``devices`` is read once up front (a patient has a handful)."""
    device_list = list(devices)
    profiles: Mapping[str, str] = {d.device_id: d.profile for d in device_list if d.profile is not None}
    yield ndjson_line(patient_resource(patient, naming))
    agents = dict.fromkeys((d.agent_id, d.org_id) for d in device_list)
    for agent_id, org_id in agents:
        yield ndjson_line(gateway_device_resource(agent_id, org_id, naming))
    for device in device_list:
        yield ndjson_line(device_resource(device, naming))
    for device in device_list:
        battery = battery_observation(device)
        if battery is not None:
            yield ndjson_line(battery)
    for group in group_readings(readings):
        yield ndjson_line(observation(group, naming=naming, device_profiles=profiles))

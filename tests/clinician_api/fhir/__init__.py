"""Tests of the FHIR R4 mapping (clinician_api.fhir)."""

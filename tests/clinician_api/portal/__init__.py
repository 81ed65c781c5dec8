"""Tests of the patient portal (mirrors clinician_api/portal/)."""

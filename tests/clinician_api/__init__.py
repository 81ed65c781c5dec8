"""Tests of the clinician API (mirrors clinician_api/)."""

"""Tests of the CMS RPM billing evidence (clinician_api.billing)."""

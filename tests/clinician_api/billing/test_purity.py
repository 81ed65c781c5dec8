"""clinician_api.billing is pure: no store, database driver or web framework (same check as fhir)."""

from __future__ import annotations

from tests.clinician_api.fhir.test_purity import check_pure


def test_billing_imports_only_stdlib_rpm_core_and_itself() -> None:
    check_pure("billing")

"""The exception tree of the FHIR mapping.

::

    VigilError (rpm_core.errors)
    └── FhirError                     anything the mapping refuses
        ├── InvalidRecord             .record .field .why  an input record that cannot be mapped
        └── InvalidFhirId             .value               not an id this package ever produced

Messages never carry a reading's value or a patient's name (they may reach a log); ``field`` and
``why`` are short stable strings.
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = ["FhirError", "InvalidFhirId", "InvalidRecord"]


class FhirError(VigilError, ValueError):
    reason = "fhir"


class InvalidRecord(FhirError):
    reason = "invalid_record"

    def __init__(self, record: str, field: str, why: str) -> None:
        super().__init__(f"{record}.{field}: {why}")
        self.record = record
        self.field = field
        self.why = why


class InvalidFhirId(FhirError):
    reason = "invalid_fhir_id"

    def __init__(self, value: str) -> None:
        super().__init__(f"not a Vigil FHIR id: {value[:80]!r}")
        self.value = value

"""The exception tree of the billing evidence.

::

    VigilError (rpm_core.errors)
    └── BillingError
        └── InvalidBillingInput       .record .field .why

Messages carry no patient data.
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = ["BillingError", "InvalidBillingInput"]


class BillingError(VigilError, ValueError):
    reason = "billing"


class InvalidBillingInput(BillingError):
    reason = "invalid_billing_input"

    def __init__(self, record: str, field: str, why: str) -> None:
        super().__init__(f"{record}.{field}: {why}")
        self.record = record
        self.field = field
        self.why = why

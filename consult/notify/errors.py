"""The exception tree of notification delivery.

::

    VigilError
    └── ConsultError
        └── NotifyError                   .reason
            ├── DeliveryError             .code .permanent .retry_after_s   (one send failed)
            ├── UnknownTemplate           .kind
            └── AckLinkInvalid            .why   ('malformed' | 'signature')

``DeliveryError.code`` is a short PHI-free reason (``smtp_550``, ``smtp_connect``, ``http_503``,
``no_address``): it is stored as the notification's ``last_error`` and shown on the alert's
timeline. ``rpm_core.backoff.backoff_delay`` reads ``retry_after_s`` (a provider's hint).
"""

from __future__ import annotations

from consult.errors import ConsultError

__all__ = ["AckLinkInvalid", "DeliveryError", "NotifyError", "UnknownTemplate"]


class NotifyError(ConsultError):
    reason = "notify"


class DeliveryError(NotifyError):
    reason = "delivery"

    def __init__(self, code: str, *, permanent: bool, retry_after_s: float | None = None) -> None:
        super().__init__(f"delivery failed: {code}" + (" (permanent)" if permanent else ""))
        self.code = code[:100]
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class UnknownTemplate(NotifyError):
    reason = "unknown_template"

    def __init__(self, kind: str) -> None:
        super().__init__(f"no template for notification kind {kind!r}")
        self.kind = kind


class AckLinkInvalid(NotifyError):
    reason = "ack_link_invalid"

    def __init__(self, why: str) -> None:
        super().__init__(f"acknowledgement link refused: {why}")
        self.why = why

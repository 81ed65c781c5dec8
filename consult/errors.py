"""The exception tree of the consult package.

::

    VigilError
    └── ConsultError                  .reason
        └── ConsultRequestNotFound    .request_id

The care-team communication work (messages, notifications, video rooms) extends this tree.
"""

from __future__ import annotations

from rpm_core.errors import VigilError

__all__ = ["ConsultError", "ConsultRequestNotFound"]


class ConsultError(VigilError):
    reason = "consult"


class ConsultRequestNotFound(ConsultError):
    reason = "consult_request_not_found"

    def __init__(self, request_id: int) -> None:
        super().__init__(f"no consult request {request_id}")
        self.request_id = request_id

"""The exception tree of the clinician API; each maps to one ``application/problem+json`` response.

::

    VigilError
    └── ApiError                  .status .title .code .detail   (RFC 9457 problem details)
        ├── BadRequest            400  a request that is well formed but cannot be honoured (bad cursor)
        ├── Unauthenticated       401  no valid session or token (.code says which: expired, revoked, ...)
        ├── Forbidden             403  the caller's role may not do this (never for a specific object)
        │   └── SecondFactorRequired  403  the session has not passed TOTP yet
        ├── NotFound              404  no such object, or one the caller may not see (the same body)
        ├── Conflict              409  the object is in the wrong state, or the key is taken
        ├── Invalid               422  a value the rules refuse (.field)
        ├── TooManyAttempts       429  throttled sign-in (.retry_after_s)
        └── ServiceUnavailable    503  the database cannot be reached (.retry_after_s)

Messages carry ids and codes only, never PHI (a problem body may be logged by a proxy).
"""

from __future__ import annotations

from typing import ClassVar

from rpm_core.errors import VigilError

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "SecondFactorRequired",
    "ServiceUnavailable",
    "TooManyAttempts",
    "Unauthenticated",
]


class ApiError(VigilError):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    reason = "api"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.reason


class BadRequest(ApiError):
    status = 400
    title = "Bad Request"
    reason = "bad_request"


class Unauthenticated(ApiError):
    status = 401
    title = "Unauthorized"
    reason = "unauthenticated"


class Forbidden(ApiError):
    status = 403
    title = "Forbidden"
    reason = "forbidden"


class SecondFactorRequired(Forbidden):
    reason = "second_factor_required"

    def __init__(self, *, enrolled: bool) -> None:
        what = "verify your authenticator code" if enrolled else "enrol an authenticator app"
        super().__init__(f"this account needs a second factor: {what} first")
        self.enrolled = enrolled


class NotFound(ApiError):
    status = 404
    title = "Not Found"
    reason = "not_found"

    def __init__(self, detail: str = "not found", *, code: str | None = None) -> None:
        super().__init__(detail, code=code)


class Conflict(ApiError):
    status = 409
    title = "Conflict"
    reason = "conflict"


class Invalid(ApiError):
    status = 422
    title = "Unprocessable Content"
    reason = "invalid"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.field = field


class TooManyAttempts(ApiError):
    status = 429
    title = "Too Many Requests"
    reason = "too_many_attempts"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, retry_after_s)


class ServiceUnavailable(ApiError):
    status = 503
    title = "Service Unavailable"
    reason = "unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

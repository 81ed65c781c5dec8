"""RFC 9457 problem details for every error: ours, FastAPI's validation errors, Starlette's 404/405,
and domain exceptions of store and alerts. Anything unexpected becomes a 500 problem in
:mod:`clinician_api.middleware` (which says nothing about the cause; the log has it, by request id).

A refused object and a missing object produce byte-identical bodies: ``type`` and ``title`` from
the status, ``detail`` "not found", ``instance`` the request path (which the caller sent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from alerts.errors import AlertNotFound, InvalidTransition, LifecycleError
from clinician_api.errors import ApiError, Invalid, TooManyAttempts
from provisioning import errors as prov
from store.errors import Conflict as StoreConflict
from store.errors import DatabaseUnavailable, MigrationError
from store.errors import NotFound as StoreNotFound

__all__ = [
    "PROBLEM_JSON",
    "PageErrors",
    "Problem",
    "document_problems",
    "install_problem_handlers",
    "problem_response",
    "translate",
]

PROBLEM_JSON: Final = "application/problem+json"
# The dashboard's pages answer errors for a person, not a program: given the request and the
# problem (status, title, detail, code), a page renderer returns an HTML response (or a redirect to
# the sign-in page), or None to answer with problem+json as the API does.
PageErrors = Callable[[Request, int, str, str, str], Response | None]
_TYPE_BASE: Final = "https://vigil.invalid/problems/"


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(description="A URI naming the problem type.")
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str = Field(description="A stable machine-readable reason.")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Validation errors, per field.")


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    code: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = Problem(
        type=_TYPE_BASE + code.replace("_", "-"),
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        code=code,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def translate(exc: Exception) -> ApiError | None:
    """Our API error for a foreign (store, alerts) exception, or None when it is not one we map."""
    from clinician_api import errors as e

    match exc:
        case ApiError():
            return exc
        case AlertNotFound() | StoreNotFound():
            return e.NotFound()
        case InvalidTransition():
            return e.Conflict(f"cannot {exc.action} an alert that is {exc.state}", code="invalid_transition")
        case LifecycleError():
            return e.Invalid(str(exc), code=exc.reason)
        case StoreConflict():
            return e.Conflict(exc.why, code="conflict")
        case DatabaseUnavailable() | MigrationError():
            return e.ServiceUnavailable("the database is unavailable; try again shortly")
        case prov.ProvisioningError():
            return _provisioning(exc)
    return None


def _provisioning(exc: prov.ProvisioningError) -> ApiError:
    """Provisioning's errors (the fleet routes). Their messages name ids and files, never PHI, but
    the server's paths are not the caller's business, so only the kind of failure is said."""
    from clinician_api import errors as e

    match exc:
        case prov.NotFound():
            return e.NotFound()
        case prov.Conflict():
            return e.Conflict(f"the {exc.kind} {exc.why}", code="conflict")
        case prov.InvalidRequest():
            return e.Invalid(f"{exc.field}: {exc.why}", field=exc.field, code="invalid_request")
        case prov.DatabaseUnavailable():
            return e.ServiceUnavailable("the database is unavailable; try again shortly")
        case prov.BrokerOutOfSync():
            return ApiError(
                "the broker and the database disagree: an operator must run `vigil broker sync`", code=exc.reason
            )
        case prov.BrokerError():
            return e.ServiceUnavailable(
                "the MQTT broker did not take the change; nothing was changed, try again shortly",
                retry_after_s=30,
            )
    return ApiError("provisioning failed on the server; an operator has to look at its log", code=exc.reason)


def _api_error(request: Request, exc: ApiError, pages: PageErrors | None = None) -> Response:
    if pages is not None and (page := pages(request, exc.status, exc.title, exc.detail, exc.code)) is not None:
        return page
    headers = {}
    retry = getattr(exc, "retry_after_s", None)
    if isinstance(retry, int):
        headers["Retry-After"] = str(retry)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="vigil"'
    errors = [{"field": exc.field}] if isinstance(exc, Invalid) and exc.field else None
    return problem_response(request, exc.status, exc.title, exc.detail, exc.code, errors=errors, headers=headers)


def install_problem_handlers(app: FastAPI, *, pages: PageErrors | None = None) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        mapped = translate(exc)
        if mapped is None:  # pragma: no cover - registered for mapped types only
            raise exc
        return _api_error(request, mapped, pages)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for that type
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = "not found" if exc.status_code == 404 else str(exc.detail)
        title = titles.get(exc.status_code, "Error")
        if pages is not None and (page := pages(request, exc.status_code, title, detail, code)) is not None:
            return page
        return problem_response(
            request,
            exc.status_code,
            title,
            detail,
            code,
            headers=dict(exc.headers or {}),
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": str(err.get("msg", ""))[:200]}
            for err in exc.errors()[:50]
        ]
        if pages is not None and (page := pages(request, 422, "Unprocessable Content", "invalid", "validation")):
            return page
        return problem_response(
            request, 422, "Unprocessable Content", "the request is invalid", "validation", errors=errors
        )

    for kind in (
        ApiError,
        AlertNotFound,
        LifecycleError,
        StoreNotFound,
        StoreConflict,
        DatabaseUnavailable,
        MigrationError,
        prov.ProvisioningError,
    ):
        app.add_exception_handler(kind, on_api_error)
    app.add_exception_handler(TooManyAttempts, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


def document_problems(app: FastAPI) -> None:
    """Say in the OpenAPI schema what every operation's errors are: ``application/problem+json``
    bodies of :class:`Problem` for any 4xx and 5xx (FastAPI would describe 422 as its own
    validation body, which this API never sends)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses["4XX"] = {"description": "A problem (RFC 9457)", **problem}
                responses["5XX"] = {"description": "A problem (RFC 9457)", **problem}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

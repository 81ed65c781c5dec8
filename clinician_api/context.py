"""What a request can reach: the process's services (built in the app's lifespan) and the
per-request facts the audit needs (request id, client address).

Dependencies here are the only way routes get a database connection: one pooled connection per
request, returned to the pool when the request ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from clinician_api.auth.passwords import Passwords
from clinician_api.keys import ApiKeys
from clinician_api.live import AlertHub
from clinician_api.pagination import CursorCodec
from clinician_api.provisioning import Provisioner
from clinician_api.settings import ApiSettings
from rpm_core.clock import Clock
from store.app_pool import AppPool
from store.connection import Connection

__all__ = ["Db", "Info", "RequestInfo", "Services", "Svc", "db", "request_info", "services"]


@dataclass(frozen=True, slots=True)
class Services:
    settings: ApiSettings
    clock: Clock
    pool: AppPool
    keys: ApiKeys
    cursors: CursorCodec
    passwords: Passwords
    hub: AlertHub
    flavor: str
    provisioner: Provisioner | None = None
    enrol_pin: str = ""  # the TLS public-key pin enrolment tokens carry ("" when unknown)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: str
    client_addr: str | None
    method: str
    path: str
    user_agent: str | None


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def request_info(request: Request) -> RequestInfo:
    state_id = getattr(request.state, "request_id", None)
    return RequestInfo(
        request_id=str(state_id) if state_id else "-",
        client_addr=request.client.host if request.client else None,
        method=request.method,
        path=request.url.path,
        user_agent=request.headers.get("user-agent"),
    )


def db(request: Request) -> Iterator[Connection]:
    with services(request).pool.connection() as conn:
        yield conn


Svc = Annotated[Services, Depends(services)]
Info = Annotated[RequestInfo, Depends(request_info)]
Db = Annotated[Connection, Depends(db)]

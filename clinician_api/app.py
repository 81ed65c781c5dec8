"""The application factory: ``create_app(settings)`` builds the FastAPI app; nothing is created at
import time. The lifespan opens the database pool (as the ``vigil_app`` role), starts the one alert
listener of this process and its audit sealer; all stop at shutdown.

Routes live under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``; the interactive docs pages
are off: they need inline script and a CDN, which the CSP and the no-internet rule forbid).
``/healthz`` says the process runs, ``/readyz`` that the database answers and the listener is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.requests import Request

from clinician_api.auth.passwords import Passwords
from clinician_api.context import Services
from clinician_api.keys import ApiKeys
from clinician_api.live import AlertHub
from clinician_api.messaging_live import MessageHub
from clinician_api.middleware import EdgeMiddleware, RequestGuard
from clinician_api.pagination import CursorCodec
from clinician_api.portal import pages as portal
from clinician_api.problems import document_problems, install_problem_handlers
from clinician_api.provisioning import Provisioner, spki_pin
from clinician_api.routes import (
    ack_links,
    admin_teams,
    admin_users,
    alerts,
    auth,
    billing,
    call,
    consults,
    enrolment,
    fhir,
    fleet,
    history,
    messages,
    notes,
    patients,
    sparklines,
    stream,
    time,
)
from clinician_api.routes.messages import Messaging
from clinician_api.sealer import AuditSealer
from clinician_api.settings import ApiSettings
from clinician_api.video import start_video
from clinician_api.web import message_pages, pages
from clinician_api.web.render import Pages, page_errors
from clinician_api.web.static import Assets
from consult.messaging.attachments import AttachmentCipher
from rpm_core.clock import Clock, SystemClock
from rpm_core.errors import ConfigError
from store.app_pool import PoolOptions, open_app_pool
from store.clinician_views import database_flavor

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
# POST paths whose body is a file (api_attachment_max_bytes instead of the 1 MiB JSON limit).
_UPLOADS = re.compile(r"/api/v1/threads/[^/]{1,64}/attachments")


def _enrol_pin(settings: ApiSettings) -> str:
    if settings.api_enrol_pin:
        return settings.api_enrol_pin
    if settings.api_tls_cert_file is not None:
        return spki_pin(settings.api_tls_cert_file.read_bytes())
    return ""


def _services(settings: ApiSettings, clock: Clock, keys: ApiKeys, provisioner: Provisioner | None) -> Services:
    pool = open_app_pool(
        PoolOptions(
            url=settings.database_url,
            min_size=settings.api_pool_min,
            max_size=settings.api_pool_max,
            role=settings.api_db_role or None,
        )
    )
    with pool.connection() as conn:
        flavor = database_flavor(conn)
    passwords = Passwords(
        time_cost=settings.api_argon2_time_cost,
        memory_kib=settings.api_argon2_memory_kib,
        parallelism=settings.api_argon2_parallelism,
        concurrency=settings.api_hash_concurrency,
    )
    hub = AlertHub(settings.database_url)
    return Services(
        settings, clock, pool, keys, CursorCodec(keys), passwords, hub, flavor, provisioner, _enrol_pin(settings)
    )


def create_app(settings: ApiSettings, *, clock: Clock | None = None, provisioner: Provisioner | None = None) -> FastAPI:
    """The clinician API over ``settings`` (with ``api_secret_key`` set); ``clock`` is a test seam;
    ``provisioner`` creates and revokes agents (the composition root's; without one the fleet
    routes that need it answer 503)."""
    if settings.api_secret_key is None:
        raise ConfigError("api_secret_key is not set (`vigil api` creates one in key_dir)")
    keys = ApiKeys.from_secret(settings.api_secret_key.get_secret_value())
    the_clock = clock or SystemClock()
    cipher = AttachmentCipher.from_secret(settings.api_secret_key.get_secret_value())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await asyncio.to_thread(_services, settings, the_clock, keys, provisioner)
        app.state.services = svc
        app.state.pages = await asyncio.to_thread(Pages)
        listener = asyncio.create_task(svc.hub.run(), name="vigil-alert-listener")
        message_hub = MessageHub(settings.database_url)
        app.state.messaging = Messaging(message_hub, cipher)
        message_listener = asyncio.create_task(message_hub.run(), name="vigil-message-listener")
        sealer = AuditSealer(svc.pool, interval_s=settings.api_audit_seal_interval_s)
        sealer.start()
        app.state.sealer = sealer
        app.state.video = start_video(svc)
        try:
            yield
        finally:
            await app.state.video.stop()
            for task in (listener, message_listener):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(sealer.stop)
            await asyncio.to_thread(svc.pool.close)

    app = FastAPI(
        title="Vigil clinician API",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    install_problem_handlers(app, pages=page_errors)
    document_problems(app)
    routers = (
        auth,
        stream,
        alerts,
        enrolment,
        history,
        time,
        patients,
        sparklines,
        admin_users,
        admin_teams,
        billing,
        fleet,
        messages,
        notes,
    )
    for module in routers:  # stream before /alerts/{id}
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(consults.router, prefix=API_PREFIX)
    app.include_router(ack_links.router)  # pages at /ack/..., outside /api/v1
    app.include_router(fhir.router)
    app.include_router(pages.router)
    app.include_router(portal.router)  # the patient portal, /portal/...
    app.include_router(message_pages.router)
    app.include_router(call.router)  # the join page, the call's WebSocket, the consult pages
    app.mount("/static", Assets(), name="static")
    _health(app)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["content-type", "authorization", "x-csrf-token", "if-none-match"],
        )
    app.add_middleware(RequestGuard, large=((_UPLOADS, settings.api_attachment_max_bytes),))
    app.add_middleware(EdgeMiddleware, hsts_max_age_s=settings.api_hsts_max_age_s if settings.api_tls else None)
    return app


def _health(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        svc: Services = request.app.state.services
        try:
            with svc.pool.connection() as conn:
                conn.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        ready = svc.hub.ready.is_set() and request.app.state.messaging.hub.ready.is_set()
        return JSONResponse({"status": "ok" if ready else "listener starting"}, status_code=200 if ready else 503)

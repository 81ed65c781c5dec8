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
from clinician_api.middleware import EdgeMiddleware
from clinician_api.pagination import CursorCodec
from clinician_api.problems import install_problem_handlers
from clinician_api.routes import ack_links, admin_teams, admin_users, alerts, auth, patients, stream
from clinician_api.sealer import AuditSealer
from clinician_api.settings import ApiSettings
from rpm_core.clock import Clock, SystemClock
from rpm_core.errors import ConfigError
from store.app_pool import PoolOptions, open_app_pool
from store.clinician_views import database_flavor

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


def _services(settings: ApiSettings, clock: Clock, keys: ApiKeys) -> Services:
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
    return Services(settings, clock, pool, keys, CursorCodec(keys), passwords, AlertHub(settings.database_url), flavor)


def create_app(settings: ApiSettings, *, clock: Clock | None = None) -> FastAPI:
    """The clinician API over ``settings`` (with ``api_secret_key`` set); ``clock`` is a test seam."""
    if settings.api_secret_key is None:
        raise ConfigError("api_secret_key is not set (`vigil api` creates one in key_dir)")
    keys = ApiKeys.from_secret(settings.api_secret_key.get_secret_value())
    the_clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await asyncio.to_thread(_services, settings, the_clock, keys)
        app.state.services = svc
        listener = asyncio.create_task(svc.hub.run(), name="vigil-alert-listener")
        sealer = AuditSealer(svc.pool, interval_s=settings.api_audit_seal_interval_s)
        sealer.start()
        app.state.sealer = sealer
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
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
    install_problem_handlers(app)
    for module in (auth, stream, alerts, patients, admin_users, admin_teams):  # stream before /alerts/{id}
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(ack_links.router)  # pages at /ack/..., outside /api/v1
    _health(app)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["content-type", "authorization", "x-csrf-token", "if-none-match"],
        )
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
        ready = svc.hub.ready.is_set()
        return JSONResponse({"status": "ok" if ready else "listener starting"}, status_code=200 if ready else 503)

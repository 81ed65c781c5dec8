"""The API under test: create_app over the run's database, a ManualClock, httpx over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from clinician_api.app import create_app
from clinician_api.settings import ApiSettings
from rpm_core.clock import ManualClock
from tests.clinician_api.world import SECRET_KEY, T0, World, build


def settings_for(url: str, **overrides) -> ApiSettings:
    base = {
        "database_url": url,
        "api_secret_key": SecretStr(SECRET_KEY),
        "api_cookie_secure": False,
        "api_argon2_time_cost": 1,
        "api_argon2_memory_kib": 1024,
        "api_argon2_parallelism": 1,
        "api_pool_min": 1,
        "api_pool_max": 4,
        "api_session_touch_s": 0,
    }
    base.update(overrides)
    return ApiSettings.model_validate(base)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def world(db: str) -> World:
    return build(db)


@pytest.fixture
def settings(world: World) -> ApiSettings:
    return settings_for(world.url)


@pytest_asyncio.fixture
async def app(settings: ApiSettings, clock: ManualClock):
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as c:
        yield c


def _client(app) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def serving(
    settings: ApiSettings, clock: ManualClock, base_url: str = "http://t"
) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own (other settings) with a client, for the length of the block."""
    application = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url=base_url) as c,
    ):
        yield c


@pytest.fixture
def new_client(app):
    """More clients of the same app (another browser), optionally from another address."""

    def make(addr: str = "10.0.0.2") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(addr, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    return make

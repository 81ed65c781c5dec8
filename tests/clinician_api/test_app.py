"""The app's edge: problem+json for every error, security headers, CORS off, typed OpenAPI, and
nothing built at import time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import SecretStr

from clinician_api.app import create_app
from rpm_core.errors import ConfigError
from tests.clinician_api.conftest import serving, settings_for
from tests.clinician_api.world import T0, sign_in

PROBLEM = "application/problem+json"


def test_importing_the_app_creates_no_settings_pool_or_engine() -> None:
    probe = (
        "import importlib, sys\n"
        "names = ['clinician_api.app', 'clinician_api.cli', 'clinician_api.audit_cli']\n"
        "mods = [importlib.import_module(n) for n in names]\n"
        "kinds = {'ApiSettings', 'AppPool', 'FastAPI'}\n"
        "bad = [k for m in mods for k, v in vars(m).items() if type(v).__name__ in kinds]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    env = {**os.environ, "VIGIL_DATABASE_URL": "postgresql://127.0.0.1:1/nowhere"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout


def test_create_app_refuses_settings_without_a_secret_key(db) -> None:
    with pytest.raises(ConfigError):
        create_app(settings_for(db, api_secret_key=None))
    with pytest.raises(ValueError, match="32"):
        settings_for(db, api_secret_key=SecretStr("short"))


@pytest.mark.asyncio
async def test_unknown_route_wrong_method_and_bad_input_are_problem_json(client, world) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (404, PROBLEM, "not_found")
    r = await client.delete("/api/v1/auth/me")
    assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (405, PROBLEM, "method_not_allowed")
    r = await client.post("/api/v1/auth/login", json={"email": "x"})
    body = r.json()
    assert (r.status_code, r.headers["content-type"], body["code"]) == (422, PROBLEM, "validation")
    assert {e["field"] for e in body["errors"]} >= {"body.password"}
    r = await client.post("/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)


@pytest.mark.asyncio
async def test_an_unexpected_exception_is_a_500_problem_that_says_nothing_of_its_cause(app, client) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail: patient Jane Doe")

    app.add_api_route("/api/v1/boom", boom)
    r = await client.get("/api/v1/boom")
    assert (r.status_code, r.headers["content-type"]) == (500, PROBLEM)
    assert "Jane" not in r.text
    assert r.json()["code"] == "internal"
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.asyncio
async def test_security_headers_on_every_response(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    for r in (await client.get("/api/v1/patients"), await client.get("/api/v1/nothing")):
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-request-id"]
        assert "strict-transport-security" not in r.headers
        assert "access-control-allow-origin" not in r.headers


@pytest.mark.asyncio
async def test_hsts_when_served_over_tls(world, clock) -> None:
    async with serving(settings_for(world.url, api_tls=True), clock) as c:
        r = await c.get("/healthz")
    assert r.headers["strict-transport-security"].startswith("max-age=31536000")


@pytest.mark.asyncio
async def test_cors_is_off_by_default_and_on_only_for_listed_origins(client, world, clock) -> None:
    pre = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    r = await client.options("/api/v1/auth/login", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    async with serving(settings_for(world.url, api_cors_origins=("https://ok.example",)), clock) as c:
        ok = await c.options("/api/v1/auth/login", headers={**pre, "origin": "https://ok.example"})
        bad = await c.options("/api/v1/auth/login", headers=pre)
    assert ok.headers["access-control-allow-origin"] == "https://ok.example"
    assert "access-control-allow-origin" not in bad.headers


@pytest.mark.asyncio
async def test_openapi_names_typed_models_and_problem_details(client) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("LoginIn", "LoginOut", "PanelPatient", "Chart", "QueueItem", "AlertDetail", "UserOut"):
        assert name in schemas
    assert "/api/v1/alerts/{alert_id}/acknowledge" in spec["paths"]
    assert (await client.get("/docs")).status_code == 404  # no CDN-backed docs page

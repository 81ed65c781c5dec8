"""Against a real `vigil api` process (uvicorn on a free port) over real HTTP: sign-in with TOTP,
the panel, the live alert stream driven by PostgreSQL NOTIFY, and `vigil audit verify` afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pyotp
import pytest

from alerts import service
from store import audit as audit_store
from store.connection import connect
from tests.clinician_api.world import PASSWORD, SECRET_KEY, World, add_alert, build
from vigil_testkit import procs
from vigil_testkit.net import free_port

VIGIL = [sys.executable, "-m", "vigil_cli"]


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "VIGIL_DATABASE_URL": url,
        "VIGIL_API_SECRET_KEY": SECRET_KEY,
        "VIGIL_API_COOKIE_SECURE": "false",
        "VIGIL_API_ARGON2_TIME_COST": "1",
        "VIGIL_API_ARGON2_MEMORY_KIB": "1024",
        "VIGIL_API_ARGON2_PARALLELISM": "1",
        "VIGIL_API_STREAM_PING_S": "0.5",
    }


def _wait_ready(base: str, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vigil api exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("vigil api did not become ready")


def _start(url: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = procs.popen(
        [*VIGIL, "api", "--host", "127.0.0.1", "--port", str(port), *extra],
        env=_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
    except BaseException:
        _stop(proc)
        raise
    return proc, base


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (a graceful shutdown), then the process's stderr."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return err


def _stopped_cleanly(proc: subprocess.Popen[str], err: str) -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown: -15 with a completed shutdown is clean.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err


@pytest.fixture
def live(db: str) -> Iterator[tuple[World, str]]:
    world = build(db)
    proc, base = _start(db)
    try:
        yield world, base
    finally:
        err = _stop(proc)
    _stopped_cleanly(proc, err)


@contextmanager
def _signed_in(world: World, base: str, name: str) -> Iterator[httpx.Client]:
    acct = world[name]
    with httpx.Client(base_url=base, timeout=10.0) as client:
        _sign_in(client, acct)
        yield client


def _sign_in(client: httpx.Client, acct) -> None:
    r = client.post("/api/v1/auth/login", json={"email": acct.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    assert acct.totp
    r = client.post("/api/v1/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).now()})
    assert r.status_code == 200, r.text


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            yield name, json.loads(line[6:])
            name = None


def _wait_sealed(url: str, timeout: float = 30.0) -> None:
    """Until the server's own sealer has chained every row (a positive signal, within a deadline)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while audit_store.unsealed(conn):
            assert time.monotonic() < deadline, "the server's sealer did not seal the audit rows"
            time.sleep(0.1)


def test_real_server_signs_in_serves_the_panel_and_streams_alerts(live) -> None:
    world, base = live
    now = datetime.now(UTC)
    p1_alert = add_alert(world, "p1", "o1", "p1", "high", opened=now - timedelta(minutes=5))
    with _signed_in(world, base, "c1") as client:
        r = client.get("/api/v1/patients")
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert [p["patient_id"] for p in r.json()["items"]] == ["p1", "p2"]
        with client.stream("GET", "/api/v1/alerts/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream.iter_lines())
            assert next(events)[0] == "ready"
            add_alert(world, "p3", "o1", "p3", "critical", opened=now)  # another team's: never delivered
            with connect(world.url) as conn:
                service.acknowledge(conn, p1_alert, by="someone-else", now=datetime.now(UTC))
            name, data = next(e for e in events if e[0] != "resync")
            assert (name, data["alert_id"], data["event"], data["state"]) == (
                "alert",
                p1_alert,
                "acknowledged",
                "acknowledged",
            )
            q = add_alert(world, "p2", "o1", "p2", "critical", opened=datetime.now(UTC))
            name, data = next(events)
            assert (name, data["alert_id"], data["event"], data["patient_id"]) == ("alert", q, "opened", "p2")
            assert set(data) == {"alert_id", "patient_id", "event", "severity", "state"}  # ids and codes only
    _wait_sealed(world.url)  # by the server's own sealer
    verify = subprocess.run(
        [*VIGIL, "audit", "verify", "--database-url", world.url],
        capture_output=True,
        text=True,
        env=_env(world.url),
        check=False,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "intact" in verify.stdout
    with psycopg.connect(world.url) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY audit_id")]
    assert actions.count("panel.read") == 1
    assert actions.count("alerts.stream") == 1


def test_several_workers_serve_one_port(db: str) -> None:
    world = build(db)
    proc, base = _start(db, "--workers", "2")
    try:
        with _signed_in(world, base, "n1") as client:
            for _ in range(6):
                assert client.get("/api/v1/patients").status_code == 200
    finally:
        err = _stop(proc)
    assert proc.returncode in (0, -signal.SIGTERM), err

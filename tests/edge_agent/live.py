"""Helpers for tests that run the real agent against the real platform of tests/e2e (rendered TLS
Mosquitto, ``vigil ingest``, PostgreSQL), set up with the production commands.

The platform and ingest fixtures are tests/e2e/test_edge_to_store.py's; this module adds what the
security tests of the edge need: the provisioning environment, ``vigil agents create`` and
``vigil edge enroll`` through their CLIs, the agent run in-process on an empty virtual radio (no
devices: readings are put in its outbox the way a device session does), and polling helpers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from typer.testing import CliRunner

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.config_file import read_config, write_config
from edge_agent.emulation import EmulatedRadio, VirtualAir
from edge_agent.identity import AgentIdentity
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from edge_agent.settings import EdgeSettings, load_edge_settings
from rpm_core.clock import SystemClock
from rpm_core.ids import agent_id
from rpm_core.reading import Reading
from tests.e2e.test_edge_to_store import ORG, PATIENT, Platform
from vigil_cli.agents import app as agents_app

__all__ = [
    "ORG",
    "PATIENT",
    "TUNING",
    "add_readings",
    "agents_cli",
    "create_agent",
    "edge_cli",
    "enroll",
    "platform_env",
    "rows",
    "running_agent",
    "scalar",
    "until",
]

DEVICE = "E0:00:00:00:30:01"
# Short timers so a run takes seconds; the code paths are production's.
TUNING = {"batch_max_age_s": 0.1, "registration_retry_s": 1.0, "mqtt_backoff_cap_s": 1.0, "status_interval_s": 2.0}


def platform_env(platform: Platform) -> dict[str, str]:
    return {
        "VIGIL_DATABASE_URL": platform.db,
        "VIGIL_KEY_DIR": str(platform.key_dir),
        "VIGIL_BROKER_DIR": str(platform.layout.out_dir),
        "VIGIL_BROKER_HOST": "localhost",
        "VIGIL_BROKER_PORT": str(platform.port),
        "VIGIL_BROKER_USER": getpass.getuser(),
    }


def agents_cli(platform: Platform, *args: str) -> str:
    result = CliRunner().invoke(agents_app, list(args), env=platform_env(platform))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def edge_cli(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(edge_app, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def create_agent(platform: Platform, agent: str, bundle: Path) -> Path:
    agents_cli(platform, "create", "--org", ORG, "--patient", PATIENT, "--agent", agent, "--out", str(bundle))
    return bundle


def enroll(bundle: Path, directory: Path, state: Path, *extra: str) -> str:
    result = edge_cli(
        "enroll", "--bundle", str(bundle), "--dir", str(directory), "--state-dir", str(state),
        "--time-zone", "UTC", "--owner", getpass.getuser(), *extra,
    )  # fmt: skip
    config = directory / "agent.toml"
    write_config(config, {**read_config(config), **TUNING}, [])
    return str(result.output)


def settings_of(directory: Path) -> EdgeSettings:
    return load_edge_settings(directory / "agent.toml")


def identity_of(directory: Path) -> AgentIdentity:
    s = settings_of(directory)
    return AgentIdentity.load(s.enrollment_dir, org=s.org_id, agent=s.agent)


def add_readings(directory: Path, values: list[float], *, start: datetime) -> list[Reading]:
    """Store readings in the enrolled agent's outbox as a device session does (the agent is stopped)."""
    s, ident = settings_of(directory), identity_of(directory)
    outbox = SqliteOutbox.open(
        s.outbox_path, key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid,
        clock=SystemClock(), max_readings=s.outbox_max_readings,
    )  # fmt: skip
    try:
        readings = [
            Reading(agent_id=agent_id(ident.agent), device_id=DEVICE, seq=0, metric="heart_rate", value=v,
                    measured_at=start + timedelta(minutes=i), flags=frozenset({"sensor_contact:detected"}))
            for i, v in enumerate(values)
        ]  # fmt: skip
        seqs = outbox.append(readings)
        return [dataclasses.replace(r, seq=seq) for r, seq in zip(readings, seqs, strict=True)]
    finally:
        outbox.close()


@asynccontextmanager
async def running_agent(directory: Path) -> AsyncIterator[asyncio.Task[None]]:
    """The real agent of ``directory`` on an empty virtual radio, until the block ends (clean stop)."""
    central = await EmulatedRadio.open(VirtualAir())
    radio = Radio(central.scanner_backend, central.client_backend)
    agent = await asyncio.to_thread(lambda: Agent(settings_of(directory), identity_of(directory), radio=radio))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 20)
        finally:
            await central.close()


async def until(check: Callable[[], Any], within: float, what: str, *, agent: asyncio.Task[None]) -> Any:
    """Poll the blocking ``check`` (in a thread) until truthy; fail at the deadline or when the agent died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if agent.done():
            agent.result()
            raise AssertionError("the agent stopped")
        if value := await asyncio.to_thread(check):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def registered(state: Path) -> bool:
    return inspect_outbox(state / "outbox.db").stats.registered_at is not None


def scalar(db: str, query: str, *args: object) -> Any:
    with psycopg.connect(db) as conn:
        row = conn.execute(query, args).fetchone()
        return None if row is None else row[0]


def rows(db: str, agent: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT seq, device_id, metric, value, time, flags, patient_id FROM readings WHERE agent_id = %s "
            "ORDER BY seq",
            (agent,),
        ).fetchall()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]

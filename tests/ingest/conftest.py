"""Ingest fixtures: the project's TLS+ACL Mosquitto, server keys in a tmp key dir, services in process
or as ``vigil ingest`` subprocesses, and simulated agents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from broker_config.accounts import INGEST_USERNAME
from ingest.service import IngestService
from ingest.settings import IngestSettings
from rpm_core.keys import ServerKey
from rpm_core.keystore import create_server_key, load_server_keys, write_private
from tests.support.agents import SimAgent, provision
from vigil_testkit import procs
from vigil_testkit.broker import SecureBroker


def wait_until(cond: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scalar(db: str, query: str, *args: object) -> Any:
    with psycopg.connect(db) as conn:
        row = conn.execute(query, args).fetchone()
        return row[0] if row else None


@pytest.fixture
def key_dir(tmp_path: Path, server_key: ServerKey, broker: SecureBroker) -> Path:
    path = tmp_path / "keys"
    create_server_key(path, server_key)
    write_private(path / "mqtt" / f"{INGEST_USERNAME}.password", broker.ingest_password.encode())
    return path


@pytest.fixture
def ingest_settings(db: str, broker: SecureBroker, key_dir: Path) -> Callable[..., IngestSettings]:
    def make(**overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {
            "database_url": db,
            "key_dir": key_dir,
            "mqtt_host": "localhost",
            "mqtt_port": broker.port,
            "mqtt_ca_file": broker.layout.ca,
            "metrics_port": 0,
            "batch_max_wait_ms": 20,
            "db_retry_base_s": 0.05,
            "db_retry_cap_s": 0.5,
        }
        values.update(overrides)
        settings = IngestSettings(**values)
        # One broker account per worker, bound to its client id (password file for `vigil ingest`).
        broker.add_ingest(settings.mqtt_client_id)
        write_private(settings.password_file(), broker.ingest_password.encode())
        return settings

    return make


@pytest.fixture
def start_ingest(ingest_settings: Callable[..., IngestSettings], key_dir: Path, broker: SecureBroker):
    started: list[IngestService] = []

    def start(**overrides: Any) -> IngestService:
        svc = IngestService(
            ingest_settings(**overrides), keyring=load_server_keys(key_dir), mqtt_password=broker.ingest_password
        )
        svc.start()
        started.append(svc)
        wait_until(lambda: svc.connected, 10, "ingest connected")
        return svc

    yield start
    for svc in started:
        svc.stop(timeout=5)


@pytest.fixture
def agents(db: str, broker: SecureBroker, server_key: ServerKey):
    made: list[SimAgent] = []

    def make(agent: str, *, register: bool = True, org: str = "clinic-1") -> SimAgent:
        sim = provision(db, broker, server_key, agent, org=org)
        sim.connect()
        made.append(sim)
        if register:
            sim.register()
            sim.wait_receipt(0)
        return sim

    yield make
    for sim in made:
        sim.close()


class IngestProcess:
    """``python -m vigil_cli ingest`` as a subprocess (kill -9 tests)."""

    def __init__(self, settings: IngestSettings, log_path: Path) -> None:
        self.env = {**os.environ}
        for name, value in settings.model_dump().items():
            if value is not None:
                self.env[f"VIGIL_{name.upper()}"] = str(value)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = procs.popen([sys.executable, "-m", "vigil_cli", "ingest"], env=self.env, stdout=log, stderr=log)
        log.close()

    def wait_connected(self, connections: int = 1, timeout: float = 60) -> None:
        """Until the log shows ``connections`` broker connections of this worker (it handles SIGTERM by then)."""
        wait_until(
            lambda: self.log().count("connected to the broker") >= connections, timeout, "ingest worker connected"
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def ingest_process(ingest_settings: Callable[..., IngestSettings], tmp_path: Path):
    made: list[IngestProcess] = []

    def make(**overrides: Any) -> IngestProcess:
        p = IngestProcess(ingest_settings(**overrides), tmp_path / f"ingest-{len(made)}.log")
        made.append(p)
        return p

    yield make
    for p in made:
        p.kill()

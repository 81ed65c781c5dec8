"""A rig for the ingest attack tests in tests/security: real Mosquitto rendered by broker_config,
real PostgreSQL, real ``vigil ingest`` processes (or the service in process, with a clock seam),
and enrolled agents that use only their own credentials.

Test modules take the rig through the ``ingest_rig`` fixture::

    from tests.support.ingest_attack import ingest_rig_fixture  # noqa: F401 - the ingest_rig fixture

(the fixture is registered under its ``name``, so the import does not shadow the test's argument;
tests/security has no conftest of its own).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker_config.accounts import INGEST_USERNAME
from ingest.service import IngestService
from ingest.settings import IngestSettings
from rpm_core.clock import Clock
from rpm_core.keys import ServerKey
from rpm_core.keystore import create_server_key, load_server_keys, write_private
from tests.ingest.conftest import IngestProcess, wait_until
from tests.support.agents import SimAgent, provision
from vigil_testkit.broker import SecureBroker, start_secure_broker

__all__ = ["IngestRig", "dead_letters", "ingest_rig_fixture", "metric", "open_rig", "scrape"]


@dataclass
class IngestRig:
    db: str
    tmp: Path
    broker: SecureBroker
    server_key: ServerKey
    key_dir: Path
    processes: list[IngestProcess] = field(default_factory=list)
    services: list[IngestService] = field(default_factory=list)
    sims: list[SimAgent] = field(default_factory=list)

    def settings(self, **overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {
            "database_url": self.db,
            "key_dir": self.key_dir,
            "mqtt_host": "localhost",
            "mqtt_port": self.broker.port,
            "mqtt_ca_file": self.broker.layout.ca,
            "metrics_port": 0,
            "batch_max_wait_ms": 20,
            "db_retry_base_s": 0.05,
            "db_retry_cap_s": 0.5,
        }
        values.update(overrides)
        settings = IngestSettings(**values)
        # One broker account per worker, bound to its client id (password file for `vigil ingest`).
        self.broker.add_ingest(settings.mqtt_client_id)
        write_private(settings.password_file(), self.broker.ingest_password.encode())
        return settings

    def process(self, **overrides: Any) -> IngestProcess:
        """A ``vigil ingest`` subprocess (not started)."""
        p = IngestProcess(self.settings(**overrides), self.tmp / f"ingest-{len(self.processes)}.log")
        self.processes.append(p)
        return p

    def service(self, *, clock: Clock | None = None, **overrides: Any) -> IngestService:
        """The ingest service in this process (for a clock seam), started and connected."""
        svc = IngestService(
            self.settings(**overrides),
            keyring=load_server_keys(self.key_dir),
            mqtt_password=self.broker.ingest_password,
            clock=clock,
        )
        svc.start()
        self.services.append(svc)
        wait_until(lambda: svc.connected, 10, "ingest connected")
        return svc

    def agent(self, name: str, *, org: str = "clinic-1", timeout: float = 60) -> SimAgent:
        """An agent provisioned as `vigil agents create` does, connected and registered."""
        sim = provision(self.db, self.broker, self.server_key, name, org=org)
        sim.connect()
        self.sims.append(sim)
        sim.register_until_receipt(timeout)
        return sim

    def close(self) -> None:
        for sim in self.sims:
            sim.close()
        for svc in self.services:
            svc.stop(timeout=5)
        for p in self.processes:
            p.kill()
        self.broker.stop()


@contextmanager
def open_rig(db: str, tmp: Path) -> Iterator[IngestRig]:
    broker = start_secure_broker(tmp / "broker")
    server_key = ServerKey.generate()
    key_dir = tmp / "keys"
    create_server_key(key_dir, server_key)
    write_private(key_dir / "mqtt" / f"{INGEST_USERNAME}.password", broker.ingest_password.encode())
    rig = IngestRig(db, tmp, broker, server_key, key_dir)
    try:
        yield rig
    finally:
        rig.close()


@pytest.fixture(name="ingest_rig")
def ingest_rig_fixture(db: str, tmp_path: Path) -> Iterator[IngestRig]:
    with open_rig(db, tmp_path) as rig:
        yield rig


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint: (name, sorted labels) -> value; empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent: Prometheus counters with labels appear on first use)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def dead_letters(db: str) -> list[tuple[str, str | None, str]]:
    """(reason, agent_id, detail) of every dead letter, oldest first."""
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT reason, agent_id, detail FROM dead_letters ORDER BY id").fetchall()

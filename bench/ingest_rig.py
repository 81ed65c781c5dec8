"""What the ingest benchmark runs against: a database, the project's broker, ingest workers, the
publisher processes, and a sampler of progress, CPU and memory.

* :class:`Rig`: a fresh PostgreSQL database (migrated), server keys, N provisioned and activated
  agents (the store's own functions), and Mosquitto rendered by ``broker_config`` (TLS, password
  file, per-agent ACLs; ``max_connections`` left at Mosquitto's default, unlimited; ingest's own
  Unix socket listener unless ``ingest_socket=False``, the ingest workers then connecting there)
  started with RLIMIT_NOFILE raised above the connection count; it can restart the broker on the
  same port.
* :class:`Publishers`: the publisher processes (``bench.fleet``), driven in parallel.
* :class:`Sampler`: a thread that every ``period`` seconds reads the committed high-water marks
  (``sum(agent_receipts.through)``: readings committed contiguously) or a row count, each
  component's CPU (utime + stime from ``/proc/<pid>/stat``: ingest workers, Mosquitto, the
  PostgreSQL backends connected to the benchmark's database, the publishers), Mosquitto's RSS and
  the whole machine's busy CPU.
"""

from __future__ import annotations

import contextlib
import getpass
import multiprocessing as mp
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.fleet import FleetSpec, fleet_main
from bench.ingest_workload import AgentCreds, cpu_seconds, machine_busy_seconds, rss_mb
from broker_config.accounts import agent_account, ingest_account, ingest_usernames
from broker_config.ca import create_ca
from broker_config.mosquitto import MosquittoSpec, find_mosquitto
from broker_config.passwords import hash_password, new_password
from broker_config.render import BrokerLayout, dynsec_files, full_spec, render_broker
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.keystore import create_server_key, write_private
from store import bench_support
from store.admin import create_database, database_url, drop_database
from store.agents import activate_agent, create_agent
from store.connection import Connection, connect
from store.migrate import migrate
from store.patients import create_org, create_patient

__all__ = ["ADMIN_URL", "COMPONENTS", "Publishers", "Rig", "Sample", "Sampler", "check_ranges", "cpu_delta"]

ADMIN_URL = os.environ.get("VIGIL_TEST_DATABASE_URL", "postgresql:///postgres?host=/var/run/postgresql")
ORG = "bench"
COMPONENTS = ("ingest", "broker", "database", "publishers")
# Broker accounts of ingest workers (vigil-ingest-1 ..); the naive consumers take them from the
# last one down, one each: the broker binds each account to its own client id, and two consumers
# with one id take the session from each other for ever. The baseline ends before ingest starts.
INGEST_ACCOUNTS = ingest_usernames(8)
NAIVE_ACCOUNTS = INGEST_ACCOUNTS[::-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _nofile_limit(n: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def check_ranges(url: str, ranges: list[tuple[str, int, int]]) -> dict[str, int]:
    """Published (agent, first seq, last seq) ranges against the readings table: how many (agent, seq)
    pairs were expected, how many distinct ones are stored, and how many rows (duplicates count)."""
    with connect(url, application_name="vigil-bench") as conn:
        expected, distinct, rows = bench_support.check_ranges(conn, ranges)
    return {"expected": expected, "distinct": distinct, "rows": rows}


def readings_table(url: str) -> dict[str, Any]:
    """Rows in the readings table and its bytes on disk (heap, indexes, TOAST), after a scenario:
    every scenario's readings so far, as one database keeps them."""
    with connect(url, application_name="vigil-bench") as conn:
        rows, size = bench_support.readings_table_size(conn)
    return {
        "readings_table_rows": rows,
        "readings_table_mb": round(size / 2**20, 1),
        "readings_table_bytes_per_row": round(size / rows, 1) if rows else None,
    }


class Rig:
    def __init__(self, work: Path, n_agents: int, n_baseline: int, *, nofile: int, ingest_socket: bool = True) -> None:
        self.work = work
        self.ingest_socket: Path | None = None  # set in _set_up when the broker has ingest's own listener
        self._want_socket = ingest_socket
        self.nofile = nofile
        self.broker: subprocess.Popen[bytes] | None = None
        self.db_name = f"vigil_bench_{secrets.token_hex(4)}"
        create_database(ADMIN_URL, self.db_name)
        self.url = database_url(ADMIN_URL, self.db_name)
        try:
            self._set_up(work, n_agents, n_baseline)
        except BaseException:
            self.close()
            raise

    def _set_up(self, work: Path, n_agents: int, n_baseline: int) -> None:
        migrate(self.url, flavor="postgres")
        self.key_dir = work / "keys"
        self.server = ServerKey.generate()
        create_server_key(self.key_dir, self.server)
        # Ingest workers and the naive consumer each log in with their own account, bound to its
        # client id as the rendered broker requires (one shared password: a benchmark, not a fleet).
        self.ingest_password = new_password()
        for name in INGEST_ACCOUNTS:
            write_private(self.key_dir / "mqtt" / f"{name}.password", self.ingest_password.encode())
        self.agents = self._provision(n_agents, "agt")
        self.baseline_agents = self._provision(n_baseline, "base")
        self.layout = BrokerLayout(work / "broker")
        self.port = free_port()
        now = datetime.now(UTC)
        self.ca_path = self.layout.ca
        if self._want_socket:
            self.ingest_socket = self.layout.ingest_socket
        base = MosquittoSpec(
            data_dir=self.layout.data_dir,
            port=self.port,
            user=getpass.getuser(),
            dynsec=dynsec_files(self.layout),
            ingest_socket=self.ingest_socket,
        )
        render_broker(
            self.layout,
            spec=base,
            ca=create_ca(now=now),
            server_names=["localhost", "127.0.0.1"],
            accounts=[
                *(agent_account(a.org, a.agent, hash_password(a.password)) for a in self.agents + self.baseline_agents),
                *(ingest_account(name, hash_password(self.ingest_password)) for name in INGEST_ACCOUNTS),
            ],
            now=now,
        )
        assert full_spec(self.layout, base).port == self.port
        self.start_broker()

    def _provision(self, n: int, prefix: str) -> list[AgentCreds]:
        now = datetime.now(UTC) - timedelta(days=1)
        out = []
        with connect(self.url, application_name="vigil-bench") as conn, conn.transaction():
            if not bench_support.has_organization(conn):
                create_org(conn, ORG, "Bench clinic")
            for i in range(n):
                agent, patient = f"{prefix}-{i:05d}", f"{prefix}-p{i:05d}"
                keys, password = AgentKeys.generate(), new_password()
                create_patient(conn, org_id=ORG, patient_id=patient, display_name="Bench Patient")
                create_agent(
                    conn,
                    org_id=ORG,
                    agent_id=agent,
                    patient_id=patient,
                    password_hash=hash_password(password),
                    token_sha256=bytes(32),
                    expires_at=now + timedelta(days=1),
                    now=now,
                )
                activate_agent(conn, agent, keys.public(), agent_version="bench", now=now)
                out.append(AgentCreds(ORG, agent, password, keys.sign_pem(), keys.kex_pem()))
        return out

    # broker

    def start_broker(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.broker = subprocess.Popen(
            [binary, "-c", str(self.layout.conf)],
            stdout=(self.work / "mosquitto.log").open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=_nofile_limit(self.nofile),  # setrlimit only, between fork and exec
        )
        wait_port(self.port)

    def stop_broker(self) -> None:
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            self.broker.wait(60)
        self.broker = None

    @property
    def broker_pid(self) -> int | None:
        return None if self.broker is None else self.broker.pid

    # ingest

    def ingest_env(self, client_id: str) -> dict[str, str]:
        socket_env = {"VIGIL_MQTT_SOCKET": str(self.ingest_socket)} if self.ingest_socket is not None else {}
        return {
            **os.environ,
            **socket_env,
            "VIGIL_DATABASE_URL": self.url,
            "VIGIL_KEY_DIR": str(self.key_dir),
            "VIGIL_MQTT_HOST": "localhost",
            "VIGIL_MQTT_PORT": str(self.port),
            "VIGIL_MQTT_CA_FILE": str(self.ca_path),
            "VIGIL_MQTT_CLIENT_ID": client_id,
            "VIGIL_METRICS_PORT": "0",
        }

    def start_ingest(self, n: int) -> list[subprocess.Popen[bytes]]:
        if n >= len(INGEST_ACCOUNTS):
            raise ValueError(f"at most {len(INGEST_ACCOUNTS) - 1} ingest workers")
        workers = []
        for i in range(n):
            log = (self.work / f"ingest-{i}.log").open("ab")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "vigil_cli", "ingest", "--log-level", "INFO"],
                    env=self.ingest_env(INGEST_ACCOUNTS[i]),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        self.wait_ingest_connected(n, connections=1)
        return workers

    def ingest_connections(self, i: int) -> int:
        path = self.work / f"ingest-{i}.log"
        return path.read_text(errors="replace").count("connected to the broker") if path.exists() else 0

    def wait_ingest_connected(self, n: int, *, connections: int, timeout: float = 120) -> float:
        started = time.monotonic()
        while not all(self.ingest_connections(i) >= connections for i in range(n)):
            if time.monotonic() - started > timeout:
                raise RuntimeError("ingest workers did not connect to the broker")
            time.sleep(0.1)
        return time.monotonic() - started

    @staticmethod
    def stop_ingest(workers: list[subprocess.Popen[bytes]]) -> None:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()

    # database

    def check_ranges(self, ranges: list[tuple[str, int, int]]) -> dict[str, int]:
        return check_ranges(self.url, ranges)

    def close(self) -> None:
        self.stop_broker()
        drop_database(ADMIN_URL, self.db_name)


class Publishers:
    """Publisher processes, each with a slice of ``agents``; :meth:`call` runs a command on all at once."""

    def __init__(
        self,
        rig: Rig,
        agents: list[AgentCreds],
        n: int,
        *,
        verify_every: int,
        receipt_timeout_s: float,
        no_subscriber_retry_s: float = 2.0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs: list[mp.process.BaseProcess] = []
        self.slices = [agents[i::n] for i in range(n)]
        for i, mine in enumerate(self.slices):
            parent, child = ctx.Pipe()
            spec = FleetSpec(
                index=i,
                host="127.0.0.1",
                port=rig.port,
                ca=str(rig.ca_path),
                server_name="localhost",
                server_kex=rig.server.public().kex,
                server_sign=rig.server.public().sign,
                agents=mine,
                verify_every=verify_every,
                receipt_timeout_s=receipt_timeout_s,
                no_subscriber_retry_s=no_subscriber_retry_s,
                nofile=len(mine) + 1024,
            )
            p = ctx.Process(target=fleet_main, args=(spec, child), daemon=True)
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def call(
        self, op: str, per_proc: list[dict[str, Any]] | None = None, timeout: float = 3600, **kw: Any
    ) -> list[Any]:
        for i, pipe in enumerate(self.pipes):
            pipe.send({"op": op, **kw, **(per_proc[i] if per_proc else {})})
        out = []
        deadline = time.monotonic() + timeout
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            while not pipe.poll(0.5):
                if not proc.is_alive():
                    raise RuntimeError(f"publisher process {proc.pid} died (exit {proc.exitcode}) during {op}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"publisher {proc.pid}: no answer to {op}")
            out.append(pipe.recv())
        return out

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError, EOFError):
            self.call("close", timeout=30)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


@dataclass
class Sample:
    t: float
    progress: int
    cpu: dict[str, dict[int, float]]
    broker_rss_mb: float | None
    machine_s: float


def cpu_delta(s0: Sample, s1: Sample) -> dict[str, float]:
    """CPU seconds per component between two samples (a process that appeared in between counts whole)."""
    out = {}
    for comp, pids in s1.cpu.items():
        before = s0.cpu.get(comp, {})
        out[comp] = sum(v - before.get(pid, 0.0) for pid, v in pids.items())
    return out


@dataclass
class Sampler:
    url: str
    pids: Callable[[], dict[str, list[int]]]
    broker_pid: Callable[[], int | None]
    progress: Callable[[Connection], int]  # a store.bench_support count, e.g. receipts_through_sum
    period: float = 0.25
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self.samples = []
        self._stop.clear()
        self._conn = connect(self.url, application_name="vigil-bench-sampler")
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> Sample:
        progress = self.progress(self._conn)
        db_pids = bench_support.client_backend_pids(self._conn)
        components = {**self.pids(), "database": db_pids}
        cpu = {}
        for comp, pids in components.items():
            cpu[comp] = {pid: c for pid in pids if (c := cpu_seconds(pid)) is not None}
        broker = self.broker_pid()
        s = Sample(
            t=time.monotonic(),
            progress=progress,
            cpu=cpu,
            broker_rss_mb=rss_mb(broker) if broker is not None else None,
            machine_s=machine_busy_seconds(),
        )
        self.samples.append(s)
        return s

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()
        self._conn.close()
        return self.samples

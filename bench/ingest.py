"""Ingest benchmark: agents -> Mosquitto (our TLS + dynamic security config) -> ingest -> PostgreSQL. Prints JSON.

Everything runs on this machine. Phases, in one run and on the same kind of workload (real sealed
envelopes of 20 readings, one MQTT/TLS connection per agent, publishers in several processes):

1. ``baseline``: a naive consumer (paho auto-ack, one INSERT per reading, COMMIT per message),
   as many processes as ingest workers, fed at the offered rate; readings/s it commits.
2. ``throughput``: ``vigil ingest`` workers (subprocesses, one shared subscription) fed at the
   offered rate with pre-sealed envelopes; ``readings_per_s`` is the committed rate (the sum of the
   agents' receipt high-water marks) over the middle of the phase, publishers still publishing.
3. ``latency``: 5,000 readings/s sealed at publish time; publish -> signed receipt covering the
   envelope (so: broker, batch wait, COMMIT, receipt back through the broker), p50/p99.

Then every published reading must be stored exactly once: ``lost`` and ``duplicated``.
``cpu_pct`` is per component during the throughput window (100 = one core).

Run: ``.venv/bin/python -m bench.ingest --seconds 60``
"""

from __future__ import annotations

import argparse
import getpass
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.ingest_workload import PER_ENVELOPE, AgentCreds, PhaseSpec, cpu_seconds, naive_consumer, publisher
from broker_config.accounts import agent_account, ingest_account, ingest_usernames
from broker_config.ca import create_ca
from broker_config.mosquitto import MosquittoSpec
from broker_config.passwords import hash_password, new_password
from broker_config.render import BrokerLayout, dynsec_files, full_spec, render_broker
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.keystore import create_server_key, write_private
from store.agents import activate_agent, create_agent, create_org, create_patient
from store.migrate import migrate

ADMIN_URL = os.environ.get("VIGIL_TEST_DATABASE_URL", "postgresql:///postgres?host=/var/run/postgresql")
MAX_WORKERS = 16  # broker accounts rendered for ingest workers (and as many naive consumers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Rig:
    def __init__(self, work: Path, n_agents: int) -> None:
        self.work = work
        self.db_name = f"vigil_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db_name)))
        params = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
        params["dbname"] = self.db_name
        self.url = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
        migrate(self.url, flavor="postgres")
        self.key_dir = work / "keys"
        self.server = ServerKey.generate()
        create_server_key(self.key_dir, self.server)
        self.ingest_password = new_password()
        # One broker account per ingest worker (bound to its client id) and per naive baseline consumer.
        self.ingest_names = ingest_usernames(MAX_WORKERS)
        self.naive_names = [f"bench-naive-{i}" for i in range(1, MAX_WORKERS + 1)]
        for name in self.ingest_names:
            write_private(self.key_dir / "mqtt" / f"{name}.password", self.ingest_password.encode())
        self.agents = self._provision(n_agents, "agt")
        self.baseline_agents = self._provision(n_agents, "base")
        self.layout = BrokerLayout(work / "broker")
        self.port = free_port()
        now = datetime.now(UTC)
        ca = create_ca(now=now)
        self.ca_path = self.layout.ca
        base = MosquittoSpec(
            data_dir=self.layout.data_dir,
            port=self.port,
            user=getpass.getuser(),
            dynsec=dynsec_files(self.layout),
        )
        render_broker(
            self.layout,
            spec=base,
            ca=ca,
            server_names=["localhost", "127.0.0.1"],
            accounts=[
                *(agent_account(a.org, a.agent, hash_password(a.password)) for a in self.agents + self.baseline_agents),
                *(
                    ingest_account(name, hash_password(self.ingest_password))
                    for name in self.ingest_names + self.naive_names
                ),
            ],
            now=now,
        )
        self.broker = subprocess.Popen(
            ["mosquitto", "-c", str(self.layout.conf)],
            stdout=(work / "mosquitto.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        assert full_spec(self.layout, base).port == self.port
        wait_port(self.port)

    def _provision(self, n: int, prefix: str) -> list[AgentCreds]:
        now = datetime.now(UTC) - timedelta(days=1)
        out = []
        with psycopg.connect(self.url) as conn:
            if conn.execute("SELECT 1 FROM organizations").fetchone() is None:
                create_org(conn, "bench", "Bench clinic")
            for i in range(n):
                agent, patient = f"{prefix}-{i:03d}", f"{prefix}-p{i:03d}"
                keys, password = AgentKeys.generate(), new_password()
                create_patient(conn, org_id="bench", patient_id=patient, display_name="Bench Patient")
                create_agent(
                    conn,
                    org_id="bench",
                    agent_id=agent,
                    patient_id=patient,
                    password_hash=hash_password(password),
                    token_sha256=bytes(32),
                    expires_at=now + timedelta(days=1),
                    now=now,
                )
                activate_agent(conn, agent, keys.public(), agent_version="bench", now=now)
                out.append(AgentCreds("bench", agent, password, keys.sign_pem(), keys.kex_pem()))
        return out

    def ingest_env(self, client_id: str) -> dict[str, str]:
        return {
            **os.environ,
            "VIGIL_DATABASE_URL": self.url,
            "VIGIL_KEY_DIR": str(self.key_dir),
            "VIGIL_MQTT_HOST": "localhost",
            "VIGIL_MQTT_PORT": str(self.port),
            "VIGIL_MQTT_CA_FILE": str(self.ca_path),
            "VIGIL_MQTT_CLIENT_ID": client_id,
            "VIGIL_METRICS_PORT": "0",
        }

    def close(self) -> None:
        self.broker.terminate()
        self.broker.wait(10)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.db_name)))

    def scalar(self, query: str) -> Any:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(query).fetchone()
            return row[0] if row else None

    def backend_pids(self, app_prefix: str) -> list[int]:
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s", (app_prefix + "%",)
            ).fetchall()
        return [int(r[0]) for r in rows]


def run_publishers(
    rig: Rig,
    agents: list[AgentCreds],
    n_procs: int,
    *,
    first_seq: dict[str, int],
    rate: float,
    duration: float,
    presealed: bool,
    wait: bool,
) -> tuple[list[mp.process.BaseProcess], Any, Any, int]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n_procs + 1), ctx.Queue()
    per_agent = int(rate * duration * 1.05 / PER_ENVELOPE / len(agents)) + 1
    procs = []
    for i in range(n_procs):
        spec = PhaseSpec(
            name="phase",
            host="localhost",
            port=rig.port,
            ca=str(rig.ca_path),
            server_kex=rig.server.public().kex,
            server_sign=rig.server.public().sign,
            agents=agents[i::n_procs],
            first_seq=first_seq,
            envelopes_per_agent=per_agent,
            rate_readings_per_s=rate / n_procs,
            duration_s=duration,
            presealed=presealed,
            wait_receipts=wait,
        )
        p = ctx.Process(target=publisher, args=(spec, barrier, results), daemon=True)
        p.start()
        procs.append(p)
    return procs, barrier, results, per_agent


def collect(procs: list[mp.process.BaseProcess], results: Any, timeout: float = 180) -> list[dict[str, Any]]:
    out = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(10)
    return out


def through_sum(rig: Rig) -> int:
    return int(rig.scalar("SELECT coalesce(sum(through), 0) FROM agent_receipts") or 0)


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def phase_baseline(rig: Rig, args: argparse.Namespace, duration: float) -> float:
    ctx = mp.get_context("spawn")
    consumers = []
    for i in range(args.workers):
        ready = ctx.Event()
        p = ctx.Process(
            target=naive_consumer,
            args=(
                rig.url,
                "localhost",
                rig.port,
                str(rig.ca_path),
                rig.naive_names[i],
                rig.ingest_password,
                str(rig.key_dir),
                ready,
            ),
            daemon=True,
        )
        p.start()
        ready.wait(60)
        consumers.append(p)
    agents = rig.baseline_agents
    procs, barrier, results, _ = run_publishers(
        rig,
        agents,
        args.publishers,
        first_seq=dict.fromkeys((a.agent for a in agents), 1),
        rate=args.offered_rate,
        duration=duration,
        presealed=True,
        wait=False,
    )
    barrier.wait()
    time.sleep(duration * 0.2)
    c0, t0 = rig.scalar("SELECT count(*) FROM readings"), time.monotonic()
    time.sleep(duration * 0.6)
    c1, t1 = rig.scalar("SELECT count(*) FROM readings"), time.monotonic()
    collect(procs, results)
    for p in consumers:
        p.terminate()
        p.join(10)
    return (c1 - c0) / (t1 - t0)


def start_workers(rig: Rig, n: int) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(n):
        log = (rig.work / f"ingest-{i}.log").open("ab")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "vigil_cli", "ingest", "--log-level", "WARNING"],
                env=rig.ingest_env(rig.ingest_names[i]),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 60
    while len(rig.backend_pids("vigil-ingest")) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("ingest workers did not start")
        time.sleep(0.2)
    time.sleep(1.0)  # subscribed
    return workers


def phase_throughput(rig: Rig, args: argparse.Namespace, duration: float, first_seq: dict[str, int]) -> dict[str, Any]:
    procs, barrier, results, _ = run_publishers(
        rig,
        rig.agents,
        args.publishers,
        first_seq=first_seq,
        rate=args.offered_rate,
        duration=duration,
        presealed=True,
        wait=False,
    )
    barrier.wait()
    time.sleep(duration * 0.2)
    pids = {
        "ingest_workers": [w.pid for w in rig.workers],
        "postgres_backends": rig.backend_pids("vigil-ingest"),
        "mosquitto": [rig.broker.pid],
        "publishers": [p.pid for p in procs if p.pid],
    }
    cpu0 = {k: cpu_of(v) for k, v in pids.items()}
    s0, t0 = through_sum(rig), time.monotonic()
    time.sleep(duration * 0.6)
    s1, t1 = through_sum(rig), time.monotonic()
    cpu = {k: round(100 * (cpu_of(v) - cpu0[k]) / (t1 - t0), 1) for k, v in pids.items()}
    pub = collect(procs, results)
    return {
        "readings_per_s": (s1 - s0) / (t1 - t0),
        "cpu_pct": cpu,
        "offered_readings_per_s": sum(r["published_envelopes"] for r in pub)
        * PER_ENVELOPE
        / max(r["elapsed_s"] for r in pub),
        "last_seq": {k: v for r in pub for k, v in r["last_seq"].items()},
    }


def phase_latency(rig: Rig, args: argparse.Namespace, duration: float, first_seq: dict[str, int]) -> dict[str, Any]:
    procs, barrier, results, _ = run_publishers(
        rig,
        rig.agents,
        args.publishers,
        first_seq=first_seq,
        rate=args.latency_rate,
        duration=duration,
        presealed=False,
        wait=True,
    )
    barrier.wait()
    pub = collect(procs, results)
    lat = sorted(x for r in pub for x in r["latencies"])
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
    return {
        "p50_ms": round(1000 * q[49], 1),
        "p99_ms": round(1000 * q[98], 1),
        "latency_samples": len(lat),
        "latency_rate_readings_per_s": round(
            sum(r["published_envelopes"] for r in pub) * PER_ENVELOPE / max(r["elapsed_s"] for r in pub)
        ),
        "last_seq": {k: v for r in pub for k, v in r["last_seq"].items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="measured time, split over the phases")
    ap.add_argument("--agents", type=int, default=24)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, choices=range(1, MAX_WORKERS + 1), metavar="N")
    ap.add_argument(
        "--offered-rate",
        type=float,
        default=48000,
        help="readings/s offered in throughput phases (above what ingest sustains here)",
    )
    ap.add_argument("--latency-rate", type=float, default=5000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    started = time.monotonic()
    rig = Rig(work, args.agents)
    rig.workers = []
    try:
        base_s, thr_s, lat_s = args.seconds * 0.25, args.seconds * 0.45, args.seconds * 0.30
        baseline = phase_baseline(rig, args, base_s)
        baseline_total = int(rig.scalar("SELECT count(*) FROM readings"))
        rig.workers = start_workers(rig, args.workers)
        thr = phase_throughput(rig, args, thr_s, first_seq=dict.fromkeys((a.agent for a in rig.agents), 1))
        drain_started = time.monotonic()  # the backlog the offered load built up, before measuring latency
        while through_sum(rig) < sum(thr["last_seq"].values()) and time.monotonic() - drain_started < 300:
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_started
        lat = phase_latency(rig, args, lat_s, first_seq={k: v + 1 for k, v in thr["last_seq"].items()})
        last = lat["last_seq"]
        expected = sum(last.values())
        deadline = time.monotonic() + 120
        while through_sum(rig) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        ingest_rows = "FROM readings WHERE agent_id LIKE 'agt-%'"
        stored = rig.scalar(f"SELECT count(*) {ingest_rows}")
        distinct = rig.scalar(f"SELECT count(DISTINCT (agent_id, seq, time)) {ingest_rows}")
        confirmed = through_sum(rig)
        result = {
            "readings_per_s": round(thr["readings_per_s"]),
            "offered_readings_per_s": round(thr["offered_readings_per_s"]),
            "p50_ms": lat["p50_ms"],
            "p99_ms": lat["p99_ms"],
            "latency_rate_readings_per_s": lat["latency_rate_readings_per_s"],
            "latency_samples": lat["latency_samples"],
            "baseline_readings_per_s": round(baseline),
            "ratio_vs_baseline": round(thr["readings_per_s"] / baseline, 2) if baseline else None,
            "lost": expected - distinct,
            "confirmed_by_receipts": confirmed,
            "duplicated": stored - distinct,
            "published_readings": expected,
            "baseline_readings_stored": baseline_total,
            "cpu_pct": thr["cpu_pct"],
            # What one fully used core of ingest workers commits (the machine is shared with others).
            "ingest_readings_per_cpu_s": round(
                thr["readings_per_s"] / max(thr["cpu_pct"]["ingest_workers"] / 100, 1e-9)
            ),
            "backlog_drain_s": round(drain_s, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "agents": args.agents,
            "publisher_processes": args.publishers,
            "ingest_workers": args.workers,
            "cores": os.cpu_count(),
            "wall_s": round(time.monotonic() - started, 1),
        }
        print(json.dumps(result))
    finally:
        for w in rig.workers:
            w.send_signal(signal.SIGTERM)
        for w in rig.workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
        rig.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Soak: the demo's platform with 200 simulated agents for an hour; prints JSON (issue 14).

    python -m bench.soak --minutes 60            # the lead's run
    python -m bench.soak --minutes 3 --agents 50 # a quick look

What runs is ``vigil demo``'s platform (:class:`vigil_cli.demo.platform.DemoPlatform`: the schema
by ``vigil db migrate``, keys and CA by ``vigil agents keys init``, ``vigil broker render`` and
Mosquitto on its output, ``vigil ingest`` and ``vigil alerts run`` as processes), on
``VIGIL_DATABASE_URL`` or the demo's embedded PostgreSQL, in a fresh directory (as root, set
``VIGIL_DATABASE_URL``: the embedded server's initdb refuses root, and unlike ``vigil demo`` the
soak does not drop to the demo's user). Its five emulated
agents are replaced by ``--agents`` simulated ones (:mod:`bench.fleet`: real MQTT 5 over TLS with
their own broker accounts, created through the broker's control API, and real sealed envelopes),
one patient each, every agent sending one envelope of ``--per-envelope`` heart-rate readings every
``--interval`` seconds.

Printed: the resident memory (MiB) of every process (Mosquitto, ingest, alerts, the PostgreSQL
backends of the database, the publishers, this process) once the fleet is connected and at the end
(VmRSS; for a PostgreSQL backend RssAnon, its own memory: its VmRSS also counts every page of the
shared buffers it has read, which grows to ``shared_buffers`` on any busy server), with each one's
growth and whether it stays within ``--rss-growth-mb`` (the bound, 64 MiB by default); readings
published, stored (distinct) and lost (must be 0) and duplicates; the readings behind the alert
engine's watermark (evaluated) and the alerts it opened.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.ingest_rig import Publishers, check_ranges
from bench.ingest_workload import AgentCreds, rss_mb
from broker_config.accounts import agent_account
from broker_config.control import DynsecControl
from broker_config.passwords import hash_password, new_password
from provisioning.broker import service_password
from rpm_core.keys import AgentKeys
from rpm_core.keystore import load_server_keys
from store import bench_support
from store.agents import activate_agent, create_agent
from store.connection import connect
from store.patients import create_patient
from vigil_cli.demo.platform import ORG, DemoLayout, DemoPlatform, open_database

__all__ = ["main", "parse_args", "run"]


def _provision(platform: DemoPlatform, url: str, n: int) -> list[AgentCreds]:
    """``n`` patients and active agents in the database, their accounts on the running broker."""
    from datetime import UTC, datetime, timedelta

    key_dir, layout = platform.layout.keys, platform.layout.broker
    port = int(json.loads(platform.layout.state_file.read_text())["broker_port"])
    admin = service_password(key_dir, "vigil-admin")
    now = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    with (
        connect(url, application_name="vigil-soak") as conn,
        DynsecControl(host="localhost", port=port, ca_file=layout / "ca.pem", password=admin) as ctl,
    ):
        for i in range(n):
            agent, patient = f"agt-soak-{i:04d}", f"pat-soak-{i:04d}"
            keys, password = AgentKeys.generate(), new_password()
            with conn.transaction():
                create_patient(conn, org_id=ORG, patient_id=patient, display_name="Soak Patient")
                create_agent(
                    conn, org_id=ORG, agent_id=agent, patient_id=patient, password_hash=hash_password(password),
                    token_sha256=bytes(32), expires_at=now + timedelta(days=1), now=now,
                )  # fmt: skip
                activate_agent(conn, agent, keys.public(), agent_version="soak", now=now)
            ctl.create(agent_account(ORG, agent, hash_password(password)), password)
            out.append(AgentCreds(ORG, agent, password, keys.sign_pem(), keys.kex_pem()))
    return out


def _backends(url: str) -> list[int]:
    with connect(url, application_name="vigil-soak") as conn:
        return bench_support.client_backend_pids(conn)


def _memory(platform: DemoPlatform, publishers: Publishers, url: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for child in platform.supervisor.children:
        if child.pid is not None:
            out[f"{child.name}:{child.pid}"] = rss_mb(child.pid)
    for pid in publishers.pids:
        out[f"publisher:{pid}"] = rss_mb(pid)
    for pid in _backends(url):  # their own memory: VmRSS would count the shared buffers they touched
        out[f"postgres-backend:{pid}"] = rss_mb(pid, "RssAnon")
    out[f"soak:{os.getpid()}"] = rss_mb(os.getpid())
    return {k: None if v is None else round(v, 1) for k, v in out.items()}


def _alerts(url: str) -> dict[str, int]:
    with connect(url, application_name="vigil-soak") as conn:
        evaluated, opened = bench_support.evaluated_and_alerts(conn, ORG)
    return {"readings_evaluated": evaluated, "alerts_opened": opened}


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    layout = DemoLayout(root)
    layout.logs.mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(f"soak: {m}", file=sys.stderr, flush=True)) if args.verbose else (lambda _m: None)
    if os.geteuid() == 0 and not os.environ.get("VIGIL_DATABASE_URL"):
        raise SystemExit("bench.soak as root: set VIGIL_DATABASE_URL (the embedded PostgreSQL refuses to run as root)")
    with open_database(layout, say) as (url, label):
        platform = DemoPlatform(layout, url, say, database_label=label, patients=())
        try:
            platform.prepare()
            platform.start_broker()
            platform.start_services()
            creds = _provision(platform, url, args.agents)
            server = load_server_keys(layout.keys).current
            state = json.loads(layout.state_file.read_text())
            rig = SimpleNamespace(port=int(state["broker_port"]), ca_path=layout.broker / "ca.pem", server=server)
            publishers = Publishers(rig, creds, args.publishers, verify_every=50, receipt_timeout_s=60.0)  # type: ignore[arg-type]
            try:
                connected = sum(r["connected"] for r in publishers.call("connect", timeout=300))
                time.sleep(5)  # let ingest and alerts settle before the first sample
                start_memory, started = _memory(platform, publishers, url), time.monotonic()
                ranges: list[tuple[str, int, int]] = []
                rounds = published = resent = 0
                while time.monotonic() - started < args.minutes * 60:
                    counts = [
                        {"counts": {c.agent: 1 for c in s}, "per_envelope": args.per_envelope}
                        for s in publishers.slices
                    ]
                    prepared = publishers.call("prepare", per_proc=counts)
                    ranges += [tuple(r) for p in prepared for r in p["ranges"]]  # type: ignore[misc]
                    rate = args.agents / args.interval / args.publishers
                    publishers.call("start", rate=rate, start_at=time.monotonic() + 0.5, window=8)
                    waited = publishers.call("wait", wait_s=args.interval * 10)
                    published += sum(w["published"] for w in waited)
                    resent += sum(w["resent"] for w in waited)
                    rounds += 1
                    say(f"round {rounds}: {published} envelopes published, {resent} resent")
                    platform.check_children()
                end_memory = _memory(platform, publishers, url)
                elapsed = time.monotonic() - started
            finally:
                publishers.close()
            deadline = time.monotonic() + 60
            while (found := check_ranges(url, ranges))["distinct"] < found["expected"] and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(args.alerts_settle_s)
            alerts = _alerts(url)
        finally:
            platform.supervisor.stop_all()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    growth = {
        k: round(end_memory[k] - start_memory[k], 1)  # type: ignore[operator]
        for k in start_memory
        if start_memory.get(k) is not None and end_memory.get(k) is not None
    }
    return {
        "bench": "soak",
        "minutes": round(elapsed / 60, 2),
        "agents": args.agents,
        "connected": connected,
        "interval_s": args.interval,
        "per_envelope": args.per_envelope,
        "rounds": rounds,
        "envelopes_published": published,
        "envelopes_resent": resent,
        "readings": {
            "published": found["expected"],
            "stored_distinct": found["distinct"],
            "rows": found["rows"],
            "lost": found["expected"] - found["distinct"],
            "duplicates_stored": found["rows"] - found["distinct"],
        },
        "alerts": alerts,
        "rss_mb": {"start": start_memory, "end": end_memory, "growth": growth},
        "rss_growth_bound_mb": args.rss_growth_mb,
        "rss_within_bound": all(g <= args.rss_growth_mb for g in growth.values()),
        "database": label,
        "workdir": str(root) if args.keep else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between an agent's envelopes")
    parser.add_argument("--per-envelope", type=int, default=5, help="readings per envelope")
    parser.add_argument("--rss-growth-mb", type=float, default=64.0, help="the bound on each process's growth")
    parser.add_argument("--alerts-settle-s", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()

"""Ingest benchmark at the fleet's shape: thousands of agents -> Mosquitto (the project's TLS + ACL
config) -> ``vigil ingest`` workers -> PostgreSQL. Prints JSON.

Everything runs on this machine. ``--agents`` simulated agents (default 10,000), one MQTT/TLS
connection each, spread over ``--publishers`` processes (``bench.fleet``: asyncio, thousands of
connections per process); the benchmark raises RLIMIT_NOFILE for itself, the publishers and the
broker it starts. Envelopes are real sealed ``rpm_core`` envelopes, sealed before each scenario's
clock starts. Scenarios, in this order, each printed as one JSON line when it finishes:

``live``             every agent connected; ``--live-rate`` envelopes/s (default 1,000) of
                     ``--readings-per-envelope`` readings (default 1) for ``--live-seconds``,
                     round-robin over the agents (10,000 agents at 1,000/s: one reading per agent
                     every 10 s); p50/p99 publish -> signed receipt.
``flood``            ``--flood-envelopes`` (default 30,000) of ``--readings-per-envelope``
                     readings released at once over all agents, each agent keeping at most 8
                     without a receipt (the agent's ``max_inflight_envelopes``): as fast as ingest
                     goes. Also runs the naive baseline first (below) for ``ratio_vs_baseline``.
``backfill``         history uploads: ``--backfill-agents`` agents (default 500) send
                     ``--backfill-envelopes`` (default 10,000) full envelopes of
                     ``--backfill-readings-per-envelope`` (default 20, the agent's
                     ``batch_max_readings``), 8 in flight per agent.
``reconnect_storm``  the broker is stopped; every agent queues a backlog of ``--storm-backlog``
                     readings (default 100, in full envelopes); the broker is started again after
                     ``--storm-down-s``; every agent reconnects with the agent's backoff and
                     jitter and uploads its backlog. ``drain_s``: broker restart -> every backlog
                     receipted.

Per scenario: ``envelopes_per_s`` and ``readings_per_s`` committed (from the agents' committed
high-water marks in ``agent_receipts``, over the 20 %-80 % of the scenario's readings for flood
and backfill, the middle 80 % of the offer for live, restart -> drained for the storm);
``p50_ms``/``p99_ms`` publish -> arrival of the signed receipt covering the envelope;
``lost``/``duplicated`` from the readings table by (agent, seq) against every range published;
``cpu_pct`` per component over the same window (100 = one core; ``ingest`` workers, ``broker``,
``database`` = the PostgreSQL backends of the benchmark's database, ``publishers``; ``machine``
= every process on the machine, ``other`` = machine minus those), ``cpu_us_per_envelope`` and
``cpu_us_per_reading`` per component (``server`` = ingest + broker + database), Mosquitto's RSS,
and the readings table after the scenario (``readings_table_rows``, ``readings_table_mb`` with its
indexes, ``readings_table_bytes_per_row``: the database's growth per reading stored).
The naive baseline (paho auto-ack, an INSERT per reading and a COMMIT per message, as many
processes as ingest workers) consumes ``--baseline-envelopes`` of the flood shape from
``--baseline-agents`` other agents before ingest starts.

The last line is one JSON object with a key per scenario run. ``--scenario NAME`` runs one (repeat
it for several).

Run: ``.venv/bin/python -m bench.ingest`` (quick look: ``--agents 1000 --live-seconds 10``)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.ingest_rig import COMPONENTS, NAIVE_ACCOUNTS, Publishers, Rig, Sample, Sampler, cpu_delta, readings_table
from bench.ingest_workload import AgentCreds, naive_consumer, raise_nofile
from store import bench_support
from store.connection import Connection

SCENARIOS = ("live", "flood", "backfill", "reconnect_storm")
WINDOW = 8  # the agent's max_inflight_envelopes default


@dataclass
class Ctx:
    args: argparse.Namespace
    rig: Rig
    pubs: Publishers
    workers: list[Any] = field(default_factory=list)
    baseline: dict[str, Any] | None = None

    def sampler(self, progress: Callable[[Connection], int] = bench_support.receipts_through_sum) -> Sampler:
        return Sampler(
            self.rig.url,
            pids=lambda: {
                "ingest": [w.pid for w in self.workers],
                "broker": [p] if (p := self.rig.broker_pid) is not None else [],
                "publishers": self.pubs.pids,
            },
            broker_pid=lambda: self.rig.broker_pid,
            progress=progress,
        )


@dataclass
class Phase:
    envelopes: int
    readings: int
    ranges: list[tuple[str, int, int]]
    pub: list[dict[str, Any]]
    samples: list[Sample]
    start_at: float


def split_counts(ctx: Ctx, agents: list[AgentCreds], per_agent: int) -> list[dict[str, Any]]:
    chosen = {a.agent for a in agents}
    return [{"counts": {a.agent: per_agent for a in mine if a.agent in chosen}} for mine in ctx.pubs.slices]


def prepare(ctx: Ctx, counts: list[dict[str, Any]], per_envelope: int) -> tuple[int, list[tuple[str, int, int]]]:
    prep = ctx.pubs.call("prepare", per_proc=counts, per_envelope=per_envelope)
    ranges = [(str(r[0]), int(r[1]), int(r[2])) for p in prep for r in p["ranges"]]
    return sum(p["envelopes"] for p in prep), ranges


def run_phase(
    ctx: Ctx, counts: list[dict[str, Any]], per_envelope: int, *, rate: float | None, window: int = WINDOW
) -> Phase:
    envelopes, ranges = prepare(ctx, counts, per_envelope)
    sampler = ctx.sampler().start()
    start_at = time.monotonic() + 0.5
    per_proc_rate = None if rate is None else rate / len(ctx.pubs.procs)
    ctx.pubs.call("start", rate=per_proc_rate, start_at=start_at, window=window)
    pub = ctx.pubs.call("wait", wait_s=ctx.args.timeout)
    return Phase(envelopes, envelopes * per_envelope, ranges, pub, sampler.stop(), start_at)


def progress_window(samples: list[Sample], total: int, lo: float = 0.2, hi: float = 0.8) -> tuple[int, int]:
    base = samples[0].progress
    i0 = next((i for i, s in enumerate(samples) if s.progress - base >= lo * total), 0)
    i1 = next((i for i, s in enumerate(samples) if s.progress - base >= hi * total), len(samples) - 1)
    return (i0, i1) if i1 > i0 else (0, len(samples) - 1)


def time_window(samples: list[Sample], t0: float, t1: float) -> tuple[int, int]:
    i0 = min(range(len(samples)), key=lambda i: abs(samples[i].t - t0))
    i1 = min(range(len(samples)), key=lambda i: abs(samples[i].t - t1))
    return (i0, i1) if i1 > i0 else (0, len(samples) - 1)


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def window_figures(samples: list[Sample], i0: int, i1: int, per_envelope: int) -> dict[str, Any]:
    s0, s1 = samples[i0], samples[i1]
    dt = s1.t - s0.t
    readings = s1.progress - s0.progress
    envelopes = readings / per_envelope
    cpu = cpu_delta(s0, s1)
    cpu = {c: cpu.get(c, 0.0) for c in COMPONENTS}
    machine = s1.machine_s - s0.machine_s
    pct = {c: _r(100 * v / dt) for c, v in cpu.items()}
    pct["total"] = _r(100 * sum(cpu.values()) / dt)
    pct["machine"] = _r(100 * machine / dt)
    pct["other"] = _r(100 * (machine - sum(cpu.values())) / dt)
    costs = {**cpu, "server": cpu["ingest"] + cpu["broker"] + cpu["database"], "total": sum(cpu.values())}
    rss = [s.broker_rss_mb for s in samples if s.broker_rss_mb is not None]
    return {
        "envelopes_per_s": _r(envelopes / dt) if dt > 0 else None,
        "readings_per_s": _r(readings / dt) if dt > 0 else None,
        "window_s": round(dt, 2),
        "cpu_pct": pct,
        "cpu_us_per_envelope": {c: _r(1e6 * v / envelopes) if envelopes else None for c, v in costs.items()},
        "cpu_us_per_reading": {c: _r(1e6 * v / readings, 2) if readings else None for c, v in costs.items()},
        "broker_rss_mb": _r(max(rss)) if rss else None,
        "broker_rss_mb_end": _r(rss[-1]) if rss else None,
    }


def common(ctx: Ctx, phase: Phase, per_envelope: int) -> dict[str, Any]:
    lat = sorted(x for p in phase.pub for x in p["latencies_ms"])
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0] if lat else None] * 99
    check = ctx.rig.check_ranges(phase.ranges)
    published = sum(p["published"] for p in phase.pub)
    return {
        "agents": len(phase.ranges),
        "readings_per_envelope": per_envelope,
        "envelopes": phase.envelopes,
        "readings": phase.readings,
        "p50_ms": _r(q[49]),
        "p99_ms": _r(q[98]),
        "latency_samples": len(lat),
        "lost": check["expected"] - check["distinct"],
        "duplicated": check["rows"] - check["distinct"],
        "unreceipted": sum(p["unreceipted"] for p in phase.pub),
        "published_envelopes": published,
        "resent_envelopes": sum(p["resent"] for p in phase.pub),
        "receipts": sum(p["receipts"] for p in phase.pub),
        "verified_receipts": sum(p["verified_receipts"] for p in phase.pub),
        "bad_receipts": sum(p["bad_receipts"] for p in phase.pub),
        "refused_pubacks": sum(p["refused_pubacks"] for p in phase.pub),
        "unrouted_pubacks": sum(p["unrouted_pubacks"] for p in phase.pub),
        "receipt_timeouts": sum(p["receipt_timeouts"] for p in phase.pub),
        "no_subscriber_resends": sum(p["no_subscriber_resends"] for p in phase.pub),
        **readings_table(ctx.rig.url),
    }


def setup_fields(ctx: Ctx, wall: float) -> dict[str, Any]:
    a = ctx.args
    return {
        "connected_agents": len(ctx.rig.agents),
        "publisher_processes": a.publishers,
        "ingest_workers": a.workers,
        "ingest_over": a.ingest_over,
        "no_subscriber_retry_s": a.no_subscriber_retry_s,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "wall_s": round(wall, 1),
    }


# ---------------------------------------------------------------------- scenarios


def scenario_live(ctx: Ctx) -> dict[str, Any]:
    a, started = ctx.args, time.monotonic()
    agents = ctx.rig.agents
    per_agent = max(1, math.ceil(a.live_rate * a.live_seconds / len(agents)))
    phase = run_phase(ctx, split_counts(ctx, agents, per_agent), a.readings_per_envelope, rate=a.live_rate)
    offer_s = phase.envelopes / a.live_rate
    i0, i1 = time_window(phase.samples, phase.start_at + 0.1 * offer_s, phase.start_at + 0.9 * offer_s)
    first = min((p["first_pub"] for p in phase.pub if p["first_pub"]), default=None)
    last = max((p["last_pub"] for p in phase.pub if p["last_pub"]), default=None)
    published = sum(p["published"] for p in phase.pub)
    return {
        **window_figures(phase.samples, i0, i1, a.readings_per_envelope),
        **common(ctx, phase, a.readings_per_envelope),
        "offered_envelopes_per_s": a.live_rate,
        # what the publishers managed to send (below the offer when they are starved of CPU)
        "published_envelopes_per_s": _r(published / (last - first)) if first and last and last > first else None,
        **setup_fields(ctx, time.monotonic() - started),
    }


def scenario_flood(ctx: Ctx) -> dict[str, Any]:
    a, started = ctx.args, time.monotonic()
    agents = ctx.rig.agents
    per_agent = max(1, math.ceil(a.flood_envelopes / len(agents)))
    phase = run_phase(ctx, split_counts(ctx, agents, per_agent), a.readings_per_envelope, rate=None)
    i0, i1 = progress_window(phase.samples, phase.readings)
    out = {
        **window_figures(phase.samples, i0, i1, a.readings_per_envelope),
        **common(ctx, phase, a.readings_per_envelope),
    }
    if ctx.baseline is not None:
        base = ctx.baseline["envelopes_per_s"]
        out["baseline_envelopes_per_s"] = base
        out["baseline_readings_per_s"] = ctx.baseline["readings_per_s"]
        out["ratio_vs_baseline"] = round(out["envelopes_per_s"] / base, 2) if base and out["envelopes_per_s"] else None
    return {**out, **setup_fields(ctx, time.monotonic() - started)}


def scenario_backfill(ctx: Ctx) -> dict[str, Any]:
    a, started = ctx.args, time.monotonic()
    agents = ctx.rig.agents[: max(1, min(a.backfill_agents, len(ctx.rig.agents)))]
    per_agent = max(1, math.ceil(a.backfill_envelopes / len(agents)))
    per_env = a.backfill_readings_per_envelope
    phase = run_phase(ctx, split_counts(ctx, agents, per_agent), per_env, rate=None)
    i0, i1 = progress_window(phase.samples, phase.readings)
    return {
        **window_figures(phase.samples, i0, i1, per_env),
        **common(ctx, phase, per_env),
        **setup_fields(ctx, time.monotonic() - started),
    }


def scenario_reconnect_storm(ctx: Ctx) -> dict[str, Any]:
    a, started = ctx.args, time.monotonic()
    per_env = min(a.backfill_readings_per_envelope, a.storm_backlog)
    per_agent = math.ceil(a.storm_backlog / per_env)
    envelopes, ranges = prepare(ctx, split_counts(ctx, ctx.rig.agents, per_agent), per_env)
    connections = [ctx.rig.ingest_connections(i) for i in range(len(ctx.workers))]
    ctx.rig.stop_broker()
    down_at = time.monotonic()
    while sum(p["connected"] for p in ctx.pubs.call("connected")) and time.monotonic() - down_at < 30:
        time.sleep(0.05)  # every agent has seen its connection drop: the backlog queues, nothing is sent
    ctx.pubs.call("start", rate=None, start_at=time.monotonic(), window=WINDOW)
    time.sleep(max(0.0, down_at + a.storm_down_s - time.monotonic()))
    ctx.rig.start_broker()
    restart = time.monotonic()
    ingest_back: list[float] = []

    def watch_ingest() -> None:
        while time.monotonic() - restart < a.timeout:
            if all(ctx.rig.ingest_connections(i) > n for i, n in enumerate(connections)):
                ingest_back.append(time.monotonic() - restart)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_ingest, daemon=True)
    watcher.start()
    sampler = ctx.sampler().start()
    pub = ctx.pubs.call("wait", wait_s=a.timeout)
    samples = sampler.stop()
    watcher.join(1)
    phase = Phase(envelopes, envelopes * per_env, ranges, pub, samples, restart)
    last_receipt = max((p["last_receipt"] or restart for p in pub), default=restart)
    last_connected = max((p["last_connected"] or restart for p in pub), default=restart)
    figures = window_figures(samples, 0, len(samples) - 1, per_env)
    drain_s = last_receipt - restart
    return {
        **figures,
        **common(ctx, phase, per_env),
        # The storm's rates are over restart -> drained (the whole backlog), not the sampler window.
        "envelopes_per_s": _r(envelopes / drain_s) if drain_s > 0 else None,
        "readings_per_s": _r(envelopes * per_env / drain_s) if drain_s > 0 else None,
        "backlog_readings_per_agent": per_agent * per_env,
        "broker_down_s": round(restart - down_at, 2),
        "drain_s": round(drain_s, 2),
        "agents_reconnected_s": round(last_connected - restart, 2),
        "ingest_reconnected_s": round(ingest_back[0], 2) if ingest_back else None,
        "reconnects": sum(p["reconnects"] for p in pub),
        "failed_connect_attempts": sum(p["connect_failures"] for p in pub),
        "connected_after": sum(p["connected"] for p in pub),
        **setup_fields(ctx, time.monotonic() - started),
    }


RUNNERS = {
    "live": scenario_live,
    "flood": scenario_flood,
    "backfill": scenario_backfill,
    "reconnect_storm": scenario_reconnect_storm,
}


def run_baseline(ctx: Ctx) -> dict[str, Any]:
    """The naive consumer on the flood shape, before ingest starts (it joins the same shared group)."""
    a, rig = ctx.args, ctx.rig
    mpc = mp.get_context("spawn")
    pubs = Publishers(rig, rig.baseline_agents, 1, verify_every=a.verify_every, receipt_timeout_s=a.receipt_timeout_s)
    consumers = []
    try:
        pubs.call("connect")
        for k in range(a.workers):
            ready = mpc.Event()
            p = mpc.Process(
                target=naive_consumer,
                args=(
                    rig.url,
                    "localhost",
                    rig.port,
                    str(rig.ca_path),
                    NAIVE_ACCOUNTS[k],
                    rig.ingest_password,
                    str(rig.key_dir),
                    ready,
                ),
                daemon=True,
            )
            p.start()
            if not ready.wait(60):
                raise RuntimeError("naive consumer did not subscribe")
            consumers.append(p)
        per_agent = max(1, math.ceil(a.baseline_envelopes / len(rig.baseline_agents)))
        counts = [{"counts": dict.fromkeys((x.agent for x in rig.baseline_agents), per_agent)}]
        prep = pubs.call("prepare", per_proc=counts, per_envelope=a.readings_per_envelope)
        total = prep[0]["envelopes"] * a.readings_per_envelope
        sampler = Sampler(
            rig.url,
            pids=lambda: {"publishers": pubs.pids, "ingest": [p.pid for p in consumers if p.pid]},
            broker_pid=lambda: rig.broker_pid,
            progress=lambda conn: bench_support.readings_of_agents(conn, "base-"),
        ).start()
        pubs.call("start", rate=None, start_at=time.monotonic(), window=10**9)  # no receipts will come
        deadline = time.monotonic() + a.timeout
        while (sampler.samples[-1].progress < total) and time.monotonic() < deadline:
            time.sleep(0.25)
        samples = sampler.stop()
        pubs.call("wait", wait_s=0)
        i0, i1 = progress_window(samples, total)
        fig = window_figures(samples, i0, i1, a.readings_per_envelope)
        return {"envelopes_per_s": fig["envelopes_per_s"], "readings_per_s": fig["readings_per_s"]}
    finally:
        for p in consumers:
            p.terminate()
            p.join(10)
        pubs.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only this one (repeatable)")
    ap.add_argument("--agents", type=int, default=10_000, help="connected agents, one MQTT/TLS connection each")
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes the agents are spread over")
    ap.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    ap.add_argument("--readings-per-envelope", type=int, default=1, help="live and flood")
    ap.add_argument("--live-rate", type=float, default=1000, help="envelopes/s offered in live")
    ap.add_argument("--live-seconds", type=float, default=30)
    ap.add_argument("--flood-envelopes", type=int, default=30_000)
    ap.add_argument("--backfill-envelopes", type=int, default=10_000)
    ap.add_argument("--backfill-agents", type=int, default=500)
    ap.add_argument("--backfill-readings-per-envelope", type=int, default=20, help="the agent's batch_max_readings")
    ap.add_argument("--storm-backlog", type=int, default=100, help="readings queued per agent while the broker is down")
    ap.add_argument("--storm-down-s", type=float, default=2.0)
    ap.add_argument("--baseline-agents", type=int, default=100)
    ap.add_argument("--baseline-envelopes", type=int, default=5_000)
    ap.add_argument("--no-baseline", action="store_true", help="skip the naive consumer")
    ap.add_argument(
        "--receipt-timeout-s", type=float, default=60.0, help="agents send unreceipted envelopes again after this"
    )
    ap.add_argument(
        "--no-subscriber-retry-s",
        type=float,
        default=2.0,
        help="agents send unreceipted envelopes again this long after a PUBACK 0x10, doubling (the agent's "
        "default); 0: only after --receipt-timeout-s, as the fleet did before",
    )
    ap.add_argument(
        "--ingest-over",
        choices=("socket", "tls"),
        default="tls",
        help="ingest workers connect over TLS as agents do (default, as ingest's own default), or over the "
        "broker's Unix socket listener for ingest (one 10,000-agent storm over it did not drain in 900 s: "
        "docs/performance.md)",
    )
    ap.add_argument("--verify-every", type=int, default=50, help="publishers verify the signature of 1 receipt in N")
    ap.add_argument("--timeout", type=float, default=900, help="per scenario")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, broker config) and say where")
    args = ap.parse_args(argv)
    if not 1 <= args.agents <= 10_000:
        ap.error("--agents must be 1..10000")
    return args


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def connect(pubs: Publishers, n: int) -> None:
    connected = sum(c["connected"] for c in pubs.call("connect"))
    if connected != n:
        raise RuntimeError(f"only {connected} of {n} agents connected")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)  # clean up (database, broker, processes) when killed
    chosen = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    needed = args.agents + args.baseline_agents + 1024  # the broker's connections, its files and some room
    nofile = raise_nofile(needed + 3072)
    if nofile < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {nofile}, {args.agents} agents need {needed}: raise the hard limit")
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    n_baseline = args.baseline_agents if "flood" in chosen and not args.no_baseline else 0
    rig = Rig(work, args.agents, n_baseline, nofile=nofile, ingest_socket=args.ingest_over == "socket")
    try:
        pubs = Publishers(
            rig,
            rig.agents,
            min(args.publishers, args.agents),
            verify_every=args.verify_every,
            receipt_timeout_s=args.receipt_timeout_s,
            no_subscriber_retry_s=args.no_subscriber_retry_s,
        )
        ctx = Ctx(args, rig, pubs)
        try:
            run_all(ctx, chosen, work)
        finally:
            Rig.stop_ingest(ctx.workers)
            pubs.close()
    finally:
        rig.close()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_all(ctx: Ctx, chosen: list[str], work: Path) -> None:
    results: dict[str, Any] = {}
    try:
        connect(ctx.pubs, len(ctx.rig.agents))
        if ctx.rig.baseline_agents:
            ctx.baseline = run_baseline(ctx)
        ctx.workers = ctx.rig.start_ingest(ctx.args.workers)
        for name in chosen:
            results[name] = RUNNERS[name](ctx)
            print(json.dumps({name: results[name]}), flush=True)
        print(json.dumps(results), flush=True)
    except BaseException:
        for log in sorted(work.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    main()

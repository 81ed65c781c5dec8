"""The clinician API under load, over real HTTP against a real ``vigil api``. Prints JSON.

A scratch database (plain PostgreSQL) gets ``--readings`` readings of ``--patients`` patients
from ``bench.store_queries``' loader (arrival order, the 90 days up to today's midnight UTC, so
that the panel's 7-day sparklines and 30-day adherence, counted back from the server's clock, hold
readings), a care team whose panel holds
``--panel`` patients, a clinician in it, and open alerts on a fifth of the panel. ``vigil api``
(``--workers`` processes) serves it; per scenario and per concurrency (``--clients``, default 1
and 32) the clients send requests for ``--seconds`` and the JSON gives p50/p99 latency and
requests/s:

- ``floor_signed_in``: ``GET /api/v1/auth/me`` (the session checked, no PHI, no audit row): what
  this machine and this load generator allow for the cheapest signed-in request, the floor under
  every other figure;
- ``panel``: ``GET /api/v1/patients?limit=200`` (the whole panel page: risk order, latest vitals,
  adherence, devices);
- ``chart_30d_hourly``: a 30-day hourly heart-rate chart of a panel patient;
- ``chart_1y_daily``: a one-year daily chart;
- ``sparklines_page_50``: ``GET /api/v1/sparklines?patient=…`` for 50 panel patients (what the
  dashboard's panel page loads after its table; the pages of the panel in turn);
- ``alert_queue``: ``GET /api/v1/alerts?limit=50``;
- ``fhir_search_1000``: ``GET /fhir/r4/Observation?patient=…&_count=1000``.

Every request writes its audit row, as in production. Then the same scenarios run again with the
audit INSERT made a no-op *in the scratch database only* (``audit_log`` swapped for a view whose
INSTEAD OF trigger returns the row without storing it: the API's code path is unchanged, the
transaction stays read-only) and ``audit_share`` is ``1 - p50_without / p50_with`` per scenario.

The load generator is ``wrk`` (``--load wrk``, the default when it is installed: Debian's ``wrk``
package), a C program whose event loop costs a few microseconds per request, so the cores go to the
server. ``--load python`` drives the same paths from Python threads (``httpx``), which spend about
as much CPU per request as a cheap route does on the server.

Each run also reports **CPU per request**: the utime + stime that the ``vigil api`` processes and
the PostgreSQL backends of the scratch database spent during the run, divided by the requests
(``api_cpu_ms``, ``db_cpu_ms``, ``server_cpu_ms``), the load generator's own
(``loadgen_cpu_ms``), and the machine's (``machine_cpu_pct``, every process, everyone's). With
``server_cpu_ms`` per request, ``cpus`` cores serve at most ``cpus * 1000 / server_cpu_ms``
requests/s (``max_requests_per_s``), and N clients that send back to back (a closed loop) wait at
least ``N / max_requests_per_s`` per request on average (``littles_law_p50_floor_ms``): what bounds
the latency at 32 clients, whatever the other load.

The machine's other load shows in the latencies; the targets (issue 12) are a 30-day chart p99 under
50 ms and the panel p99 under 150 ms at 32 clients, and audit under 10 % of a request's time
(``audit_share_cpu``: ``1 - server_cpu_ms without / with`` the audit row, per scenario and
concurrency; ``audit_share_p50`` compares the p50 latencies, which the machine's noise moves
more).
Run: ``.venv/bin/python -m bench.api`` (10 million readings); ``--readings 1000000 --patients 500``
for a quick run. ``--keep`` keeps the scratch database and ``--database NAME`` measures a kept one
again (migrated to the current schema, a new clinician and team; no reload); drop it afterwards
with ``--drop``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pyotp

from bench.ingest_workload import cpu_seconds, machine_busy_seconds
from bench.store_queries import ADMIN_URL, ORG, load_readings, log, patient_id, seed_fleet, url_for
from clinician_api.auth.passwords import Passwords
from clinician_api.keys import ApiKeys
from store import bench_support, care_teams, users
from store.admin import create_database, drop_database
from store.connection import connect
from store.migrate import migrate

SECRET: Final = "bench-secret-" + "k" * 40
DAY: Final = timedelta(days=1)
PASSWORD: Final = "bench password that is long enough"  # noqa: S105 - a scratch database's account


def seed_people(url: str, panel: int, end: datetime, *, alerts: bool = True) -> tuple[str, str]:
    """A care team with ``panel`` patients, a clinician in it (TOTP enrolled), open alerts (a
    reused database has them already: ``alerts=False``)."""
    keys = ApiKeys.from_secret(SECRET)
    secret = pyotp.random_base32()
    tag = secrets.token_hex(3)
    email = f"bench-{tag}@clinic.test"
    with connect(url, application_name="vigil-bench") as conn, conn.transaction():
        hashed = Passwords(time_cost=1, memory_kib=1024, parallelism=1, concurrency=1).hash(PASSWORD)
        user = users.create_user(
            conn, org_id=ORG, email=email, display_name="Bench", role="clinician", now=end, password_hash=hashed
        )
        users.set_totp_pending(conn, user.user_id, keys.seal(secret.encode(), bound_to=user.user_id), end)
        users.enable_totp(conn, user.user_id, end)
        team = care_teams.create_team(conn, ORG, f"bench ward {tag}", end)
        care_teams.add_member(conn, team, user.user_id, end)
        for p in range(panel):
            care_teams.add_patient(conn, team, patient_id(p), end)
        if alerts:
            bench_support.insert_alerts_for_panel(conn, org=ORG, at=end, panel=panel)
    return email, secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    pid: int  # the ``vigil api`` process; its workers are its children


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's ``--workers`` are children of the supervisor)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


CpuSample = dict[str, dict[int, float]]


def cpu_sample(url: str, server: Server) -> tuple[CpuSample, float]:
    """CPU seconds so far of each ``vigil api`` process and each client backend of the database."""
    with connect(url, application_name="vigil-bench-cpu") as conn:
        backends = bench_support.client_backend_pids(conn)
    components = {"api": descendants(server.pid), "db": backends}
    sample = {
        comp: {pid: c for pid in pids if (c := cpu_seconds(pid)) is not None} for comp, pids in components.items()
    }
    return sample, machine_busy_seconds()


def cpu_used(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Seconds per component between two samples (a process first seen in ``after`` counts from 0)."""
    return {
        comp: sum(max(0.0, c - before.get(comp, {}).get(pid, 0.0)) for pid, c in pids.items())
        for comp, pids in after.items()
    }


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@contextmanager
def serving(url: str, workers: int) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "VIGIL_CONFIG": "",
        "VIGIL_DATABASE_URL": url,
        "VIGIL_API_SECRET_KEY": SECRET,
        "VIGIL_API_COOKIE_SECURE": "false",
        "VIGIL_API_POOL_MAX": "40",
        "VIGIL_API_PAGE_MAX": "1000",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vigil_cli",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("vigil api did not start")
            time.sleep(0.2)
        yield Server(base, proc.pid)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def sign_in(base: str, email: str, totp_secret: str) -> httpx.Cookies:
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        r.raise_for_status()
        c.headers["x-csrf-token"] = r.json()["csrf_token"]
        for _ in range(3):  # a code is accepted once per 30 s step: wait for the next step if used
            v = c.post("/api/v1/auth/totp/verify", json={"code": pyotp.TOTP(totp_secret).now()})
            if v.status_code == 200:
                return c.cookies
            time.sleep(31 - time.time() % 30)
        v.raise_for_status()
    raise SystemExit("sign-in failed")


Scenario = Callable[[int], str]


def scenarios(panel: int, end_at: datetime) -> dict[str, Scenario]:
    stamp = "%Y-%m-%dT%H:%M:%SZ"  # no "+" to escape in a query string
    end = end_at.strftime(stamp)
    month = (end_at - timedelta(days=30)).strftime(stamp)
    year = (end_at - timedelta(days=365)).strftime(stamp)
    pages = max(1, -(-panel // 50))  # the dashboard's pages of 50
    return {
        "floor_signed_in": lambda i: "/api/v1/auth/me",
        "panel": lambda i: "/api/v1/patients?limit=200",
        "chart_30d_hourly": lambda i: (
            f"/api/v1/patients/{patient_id(i % panel)}/vitals/heart_rate?resolution=hourly&start={month}&end={end}"
        ),
        "chart_1y_daily": lambda i: (
            f"/api/v1/patients/{patient_id(i % panel)}/vitals/heart_rate?resolution=daily&start={year}&end={end}"
        ),
        "sparklines_page_50": lambda i: (
            "/api/v1/sparklines?"
            + "&".join(f"patient={patient_id(p)}" for p in range(50 * (i % pages), min(panel, 50 * (i % pages + 1))))
        ),
        "alert_queue": lambda i: "/api/v1/alerts?limit=50",
        "fhir_search_1000": lambda i: f"/fhir/r4/Observation?patient={patient_id(i % panel)}&_count=1000",
    }


def drive_python(base: str, cookies: httpx.Cookies, path: Scenario, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` Python threads, each sending its next request as soon as the last is answered."""
    latencies: list[float] = []
    errors = 0
    sizes: list[int] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(n: int) -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        i = n * 7919
        with httpx.Client(base_url=base, cookies=cookies, timeout=60) as c:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                r = c.get(path(i))
                mine.append(time.perf_counter() - t0)
                bad += r.status_code != 200
                if len(sizes) < 5:
                    sizes.append(len(r.content))
                i += 1
        with lock:
            latencies.extend(mine)
            errors += bad

    cpu0 = time.process_time()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "elapsed_s": elapsed,
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2) if ordered else None,
        "response_bytes": int(statistics.median(sizes)) if sizes else None,
        "loadgen_cpu_s": time.process_time() - cpu0,
    }


# wrk runs this script in each of its threads: the paths in turn (each thread from its own offset),
# and at the end one JSON line with the latency percentiles (microseconds) and the counts.
WRK_SCRIPT: Final = """
local paths = {%s}
local counter = 0
local offset = 0
function setup(thread)
  thread:set("offset", counter * 7919)
  counter = counter + 1
end
function request()
  offset = offset + 1
  return wrk.format("GET", paths[(offset %% #paths) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "bytes": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "non_2xx": %%d, ' ..
    '"socket_errors": %%d}\\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def drive_wrk(base: str, cookies: httpx.Cookies, path: Scenario, clients: int, seconds: float) -> dict[str, Any]:
    """``wrk`` with ``clients`` keep-alive connections, each sending back to back (a closed loop)."""
    paths = ", ".join(json.dumps(path(i)) for i in range(1000))
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % paths)
        script.flush()
        cpu0 = children_cpu_seconds()
        done = subprocess.run(
            [
                "wrk",
                f"--threads={min(clients, os.cpu_count() or 1)}",
                f"--connections={clients}",
                f"--duration={max(1, round(seconds))}s",
                "--timeout=60s",
                f"--script={script.name}",
                f"--header=Cookie: {cookie}",
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        loadgen = children_cpu_seconds() - cpu0
    line = next(ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("{"))
    w = json.loads(line)
    requests = int(w["requests"])
    return {
        "requests": requests,
        "errors": int(w["non_2xx"]) + int(w["socket_errors"]),
        "elapsed_s": w["duration_us"] / 1e6,
        "p50_ms": round(w["p50_us"] / 1000, 2) if requests else None,
        "p99_ms": round(w["p99_us"] / 1000, 2) if requests else None,
        # wrk counts the headers too; close enough to say how large an answer is
        "response_bytes": int(w["bytes"] / requests) if requests else None,
        "loadgen_cpu_s": loadgen,
    }


def settle(server: Server, *, quiet_s: float = 0.3, limit_s: float = 60.0) -> None:
    """Wait until the API has finished the requests wrk abandoned at the end of a run (the server
    still answers them), so that they are not counted in the next run's CPU."""
    deadline = time.monotonic() + limit_s
    last = sum(c for pid in descendants(server.pid) if (c := cpu_seconds(pid)) is not None)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = sum(c for pid in descendants(server.pid) if (c := cpu_seconds(pid)) is not None)
        if now - last < 0.02:  # two clock ticks: idle but for the odd timer
            return
        last = now


def drive(
    server: Server, url: str, cookies: httpx.Cookies, path: Scenario, clients: int, seconds: float, load: str
) -> dict[str, Any]:
    settle(server)
    before, machine0 = cpu_sample(url, server)
    run = (drive_wrk if load == "wrk" else drive_python)(server.base, cookies, path, clients, seconds)
    after, machine1 = cpu_sample(url, server)
    used = cpu_used(before, after)
    if run["errors"]:
        log(f"{run['errors']} of {run['requests']} requests failed")
    if not run["requests"]:
        log(f"no request completed in {seconds} s: raise --seconds")
        run["p50_ms"] = run["p99_ms"] = None
    n = max(1, run["requests"])
    elapsed = run.pop("elapsed_s")
    return {
        "clients": clients,
        **run,
        "requests_per_s": round(run["requests"] / elapsed, 1) if elapsed > 0 else None,
        "api_cpu_ms": round(used["api"] * 1000 / n, 3),
        "db_cpu_ms": round(used["db"] * 1000 / n, 3),
        "server_cpu_ms": round((used["api"] + used["db"]) * 1000 / n, 3),
        "loadgen_cpu_ms": round(run.pop("loadgen_cpu_s") * 1000 / n, 3),
        "machine_cpu_pct": round((machine1 - machine0) * 100 / elapsed, 1) if elapsed > 0 else None,
    }


def bound(runs: dict[str, dict[str, Any]]) -> None:
    """What the CPU per request allows, from the one-client run.

    With one client at most one request is in flight when the run stops, so its CPU per request is
    the cleanest (wrk abandons the requests in flight at the end of a run; the server still spends
    CPU on them before the sample, which inflates a 32-client run of a slow route by up to 32
    requests' worth; ``settle`` keeps them out of the next run).
    ``cpus`` cores serve at most ``cpus * 1000 / server_cpu_ms`` requests/s, and N clients sending
    back to back then wait at least ``N / max_requests_per_s`` each (Little's law)."""
    one = runs.get("c1")
    if one is None or not one["requests"] or not one["server_cpu_ms"]:
        return
    max_rps = (os.cpu_count() or 1) * 1000 / one["server_cpu_ms"]
    for run in runs.values():
        run["max_requests_per_s"] = round(max_rps, 1)
        run["littles_law_p50_floor_ms"] = round(run["clients"] * 1000 / max_rps, 2)


def run_all(
    server: Server,
    url: str,
    cookies: httpx.Cookies,
    panel: int,
    end: datetime,
    clients: Sequence[int],
    seconds: float,
    load: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path in scenarios(panel, end).items():
        drive(server, url, cookies, path, 1, 1.0, load)  # warm the caches
        out[name] = {f"c{n}": drive(server, url, cookies, path, n, seconds, load) for n in clients}
        bound(out[name])
        log(f"{name}: {json.dumps(out[name])}")
    return out


def shares(result: dict[str, Any], figure: str) -> dict[str, dict[str, float | None]]:
    """``1 - without / with`` the audit row, per scenario (the floor writes none) and concurrency."""
    out: dict[str, dict[str, float | None]] = {}
    for scenario, runs in result["without_audit"].items():
        if scenario == "floor_signed_in":
            continue
        out[scenario] = {}
        for level, run in runs.items():
            without, with_ = run[figure], result["with_audit"][scenario][level][figure]
            out[scenario][level] = round(1 - without / with_, 3) if without and with_ else None
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--readings", type=int, default=10_000_000)
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--panel", type=int, default=200)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    p.add_argument(
        "--database",
        help="measure this kept scratch database again (no reload; implies --keep; give the sizes it was loaded with)",
    )
    p.add_argument("--drop", action="store_true", help="with --database: drop it at the end")
    p.add_argument(
        "--load",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="the load generator (default: wrk when installed)",
    )
    args = p.parse_args(argv)
    reuse = args.database is not None
    name = args.database if reuse else "vigil_bench_api_" + secrets.token_hex(4)
    if reuse and not name.startswith("vigil_bench_api_"):
        raise SystemExit("--database takes a scratch database this benchmark kept (vigil_bench_api_...)")
    args.keep = (args.keep or reuse) and not args.drop
    # The readings end at today's midnight (UTC): the server's clock is the wall clock, and the
    # panel's sparklines and adherence look back 7 and 30 days from it.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if not reuse:
        create_database(ADMIN_URL, name)
    url = url_for(name)
    try:
        migrate(url, flavor="postgres")
        with connect(url, application_name="vigil-bench") as conn:
            if not reuse:
                seed_fleet(conn, args.patients, end=end)
                load_readings(conn, args.readings, args.patients, end=end)
            else:
                newest = bench_support.newest_reading_time(conn)
                end = end if newest is None else newest.replace(hour=0, minute=0, second=0, microsecond=0) + DAY
            bench_support.vacuum_analyze(conn)
        email, totp_secret = seed_people(url, args.panel, end, alerts=not reuse)
        result: dict[str, Any] = {
            "readings": args.readings,
            "patients": args.patients,
            "panel": args.panel,
            "workers": args.workers,
            "seconds_per_run": args.seconds,
            "cpus": os.cpu_count(),
            "load_generator": args.load,
            "load_average_at_start": os.getloadavg(),
            "database": name if args.keep else None,
            "readings_end": end.isoformat(),
        }
        with serving(url, args.workers) as server:
            cookies = sign_in(server.base, email, totp_secret)
            result["with_audit"] = run_all(server, url, cookies, args.panel, end, args.clients, args.seconds, args.load)
        with connect(url, application_name="vigil-bench") as conn, conn.transaction():
            bench_support.disable_audit_log(conn)
        try:
            with serving(url, args.workers) as server:
                cookies = sign_in(server.base, email, totp_secret)
                result["without_audit"] = run_all(
                    server, url, cookies, args.panel, end, args.clients, args.seconds, args.load
                )
        finally:
            with connect(url, application_name="vigil-bench") as conn, conn.transaction():
                bench_support.enable_audit_log(conn)
        result["audit_share_p50"] = shares(result, "p50_ms")
        result["audit_share_cpu"] = shares(result, "server_cpu_ms")
        result["load_average_at_end"] = os.getloadavg()
        c = f"c{max(args.clients)}"
        result["targets"] = {
            "chart_30d_p99_under_50ms": (result["with_audit"]["chart_30d_hourly"][c]["p99_ms"] or 1e9) < 50,
            "panel_p99_under_150ms": (result["with_audit"]["panel"][c]["p99_ms"] or 1e9) < 150,
            "audit_under_10_percent_of_cpu": all(
                v is not None and v < 0.10 for s in result["audit_share_cpu"].values() for v in s.values()
            ),
        }
    finally:
        if not args.keep:
            drop_database(ADMIN_URL, name)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

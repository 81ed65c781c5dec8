"""Time from an alert's escalation step to the SMTP server's receipt of its email.

A fresh database with one organisation, ``--patients`` patients on one care team with one nurse.
For each of ``--alerts`` alerts, paced at ``--rate`` per second: the alert is opened, the alert
engine's escalation step (``alerts.escalation.run_escalations`` with consult's sink) commits its
notifications (an email and an in-app note to the nurse), and the time of that COMMIT is taken.
``vigil notify run`` runs as a real process (or ``--workers`` of them) and sends over STARTTLS to a
real local SMTP server (aiosmtpd, the tests' server), which takes the time each message arrives.
The latency of an alert is arrival minus commit; p50/p90/p99/max over all alerts, as JSON.

The machine is shared with other work: read the figures as indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.escalation import run_escalations
from bench.store_queries import ADMIN_URL, url_for
from consult.notify.sink import NotifyingSink
from store import bench_support, care_teams, users
from store.admin import create_database, drop_database
from store.alerts import NewAlert, insert_alert
from store.connection import connect
from store.migrate import migrate
from vigil_testkit.smtp import SmtpServer

_ALERT = re.compile(r"/alerts/(\d+)")
SECRET = "bench-secret-" + "b" * 40


def _world(url: str, patients: int) -> str:
    now = datetime.now(UTC)
    with connect(url, application_name="vigil-bench") as conn, conn.transaction():
        bench_support.insert_org(conn, "o1", "Bench clinic")
        team = care_teams.create_team(conn, "o1", "t1", now)
        nurse = users.create_user(conn, org_id="o1", email="nurse@bench.test", display_name="N", role="nurse", now=now)
        care_teams.add_member(conn, team, nurse.user_id, now)
        for p in range(patients):
            pid = f"pat-{p:04d}"
            bench_support.insert_patients(conn, "o1", [(pid, "Bench", None)])
            care_teams.add_patient(conn, team, pid, now)
    return nurse.user_id


def _escalate(url: str, n: int, patients: int, rate: float) -> dict[int, float]:
    """Open ``n`` alerts at ``rate``/s, each followed by the escalation step; alert id -> commit time."""
    committed: dict[int, float] = {}
    sink = NotifyingSink()
    interval = 1.0 / rate
    start = time.monotonic()
    with connect(url, application_name="vigil-bench") as conn:
        for i in range(n):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = datetime.now(UTC)
            alert_id = insert_alert(
                conn,
                NewAlert(
                    "o1",
                    f"pat-{i % patients:04d}",
                    f"threshold:bench:{i}",
                    "threshold",
                    "spo2",
                    "low",
                    "bench",
                    [],
                    {},
                    now,
                    now,
                ),
            )
            run_escalations(conn, now, sink)
            committed[alert_id] = time.time()
    return committed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="alerts per second")
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    name = f"vigil_bench_notify_{secrets.token_hex(4)}"
    create_database(ADMIN_URL, name)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        smtp = SmtpServer(Path(tmp)).start()
        try:
            url = url_for(name)
            migrate(url, flavor="postgres")
            _world(url, args.patients)
            env = {
                **os.environ,
                "VIGIL_CONFIG": "",
                "VIGIL_DATABASE_URL": url,
                "VIGIL_API_SECRET_KEY": SECRET,
                "VIGIL_NOTIFY_SMTP_HOST": smtp.host,
                "VIGIL_NOTIFY_SMTP_PORT": str(smtp.port),
                "VIGIL_NOTIFY_SMTP_CA_FILE": str(smtp.ca_file),
                "VIGIL_NOTIFY_SMTP_FROM": "Vigil <vigil@bench.test>",
            }
            log = Path(tmp) / "workers.log"
            with log.open("ab") as out:
                procs = [
                    subprocess.Popen(
                        [sys.executable, "-m", "vigil_cli", "notify", "run"], stdout=out, stderr=out, env=env
                    )
                    for _ in range(args.workers)
                ]
            time.sleep(3.0)  # let the workers import and connect before the clock starts
            started = time.monotonic()
            committed = _escalate(url, args.alerts, args.patients, args.rate)
            received = smtp.wait_for(args.alerts, timeout=300)
            elapsed = time.monotonic() - started
            with connect(url, application_name="vigil-bench") as conn:
                waits = bench_support.email_waits_ms(conn)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)
            smtp.stop()
            drop_database(ADMIN_URL, name)
    latencies = []
    for m in received:
        match = _ALERT.search(m.body)
        if match and int(match.group(1)) in committed:
            latencies.append((m.at - committed[int(match.group(1))]) * 1000)
    result = {
        "alerts": args.alerts,
        "rate_per_s": args.rate,
        "workers": args.workers,
        "emails_received": len(received),
        "duplicate_message_ids": len(received) - len({m.message_id for m in received}),
        "latency_ms": {
            "p50": round(_pct(latencies, 0.50), 1),
            "p90": round(_pct(latencies, 0.90), 1),
            "p99": round(_pct(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
            "mean": round(statistics.fmean(latencies), 1),
        },
        # From the escalation's time to the worker starting the attempt (the rest is rendering and SMTP).
        "queue_wait_ms": {"p50": round(_pct(waits, 0.5), 1), "p99": round(_pct(waits, 0.99), 1)},
        "elapsed_s": round(elapsed, 1),
        "cores": os.cpu_count(),
        "note": "shared machine: indicative",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

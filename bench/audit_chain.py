"""What the audit chain costs a request: transactions with and without one audit row, 1 and N
concurrent writers, on a scratch database. Prints JSON.

    python -m bench.audit_chain [--transactions 2000] [--threads 1 8]

Each timed transaction does what a cheap audited read does around its audit row: one indexed
SELECT, then (in the audited variant) the audit INSERT, then COMMIT. Writing a row takes no lock
(the chain is appended by the sealer), so concurrent audited commits share WAL flushes; a sealer
thread runs every second as in the API, and the chain is verified at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.store_queries import ADMIN_URL, url_for
from store import audit as audit_store
from store import bench_support
from store.admin import create_database, drop_database
from store.audit import AuditEntry
from store.connection import connect
from store.migrate import migrate


def _entry(i: int) -> AuditEntry:
    return AuditEntry(at=datetime.now(UTC), action="patient.read", object_type="patient", outcome="success",
                      org_id="o1", actor_id="00000000-0000-0000-0000-000000000001", actor_role="clinician",
                      patient_id=f"p{i % 200}", object_id=f"p{i % 200}", basis="panel", client_addr="10.0.0.1",
                      request_id=secrets.token_hex(16))  # fmt: skip


def _worker(url: str, n: int, audited: bool, barrier: threading.Barrier, latencies: list[float]) -> None:
    with connect(url, application_name="vigil-bench") as conn:
        barrier.wait()
        for i in range(n):
            t = time.perf_counter()
            with conn.transaction():
                bench_support.stand_in_read(conn, i)
                if audited:
                    audit_store.append(conn, _entry(i))
            latencies.append(time.perf_counter() - t)


def _sealer(url: str, stop: threading.Event) -> None:
    with connect(url, application_name="vigil-bench") as conn:
        while not stop.wait(1.0):
            while audit_store.seal(conn):
                pass


def _run(url: str, threads: int, per_thread: int, audited: bool) -> dict[str, Any]:
    barrier = threading.Barrier(threads + 1)
    latencies: list[float] = []
    workers = [
        threading.Thread(target=_worker, args=(url, per_thread, audited, barrier, latencies)) for _ in range(threads)
    ]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "threads": threads,
        "audited": audited,
        "transactions": len(latencies),
        "tx_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=2000, help="per configuration")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args(argv)
    name = f"vigil_bench_audit_{secrets.token_hex(4)}"
    create_database(ADMIN_URL, name)
    try:
        url = url_for(name)
        migrate(url, flavor="postgres")
        stop = threading.Event()
        sealer = threading.Thread(target=_sealer, args=(url, stop))
        sealer.start()
        try:
            runs = [
                _run(url, threads, max(1, args.transactions // threads), audited)
                for threads in args.threads
                for audited in (False, True)
            ]
        finally:
            stop.set()
            sealer.join()
        with connect(url, application_name="vigil-bench") as conn:
            started = time.perf_counter()
            sealed = 0
            while n := audit_store.seal(conn):
                sealed += n
            seal_s = time.perf_counter() - started
            report = audit_store.verify_chain(audit_store.iter_chain(conn))
    finally:
        drop_database(ADMIN_URL, name)
    result = {
        "runs": runs,
        "chain_rows": report.rows,
        "chain_ok": report.ok,
        "left_to_seal_at_end": sealed,
        "final_seal_s": round(seal_s, 3),
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["chain_ok"] else 1)

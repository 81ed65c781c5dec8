"""Reading queries of ``store.readings`` on a large table loaded in arrival order. Prints JSON.

A scratch database (plain PostgreSQL flavour, migrated by ``store.migrate``) gets ``--rows``
readings of ``--patients`` patients spread over 90 days and inserted in *arrival order*: time
ascending with the patients interleaved, as ingest writes them, so consecutive readings of one
patient's metric sit on different heap pages. Then ``VACUUM ANALYZE`` (sets the visibility map)
and, per query, the wall time of the first run (cold for shared buffers, the OS cache may hold
the pages), the median of ``--repeat`` runs, and one ``EXPLAIN (ANALYZE, BUFFERS)``:

- ``latest``: latest value of every metric for 50 patients, ``store.readings.latest_query``
  (``LATERAL ... LIMIT 1``, one index probe per patient and metric) against a ``DISTINCT ON``
  baseline written here; both must return the same rows (``latest_rows_agree``).
- ``chart``: ``store.readings.series`` over 30 days of one patient's heart rate, 1-hour and 1-day
  buckets; buffers (shared hit + read), ``Heap Fetches``, whether the readings scan was an Index
  Only Scan, and buffers per aggregated row (about 1 would be one heap page per row).

Insert cost as the table grows: the load's own rate per 1M-row chunk (``load_chunk_rows_per_s``),
and ingest's write path afterwards (``insert_*``: ``--insert-batches`` transactions of
``--insert-batch-rows`` readings through ``store.readings.insert_readings``, wall time per batch
and the PostgreSQL backend's CPU per row). For a table that grows by patients at a fixed history
per patient (what a growing fleet does), scale ``--patients`` with ``--rows``: the chart then
aggregates the same number of rows at every size.

``--keep`` keeps the database (``database`` in the JSON names it); by default it is dropped.
Run: ``.venv/bin/python -m bench.store_queries --rows 10000000``
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bench.ingest_workload import cpu_seconds
from rpm_core.metrics import METRIC_NAMES
from store import bench_support as bs
from store import summaries
from store.admin import create_database, database_url, drop_database
from store.connection import Connection, connect
from store.migrate import migrate
from store.readings import ReadingRow, create_staging, insert_readings, latest_query, series, series_query

ADMIN_URL: Final = os.environ.get("VIGIL_TEST_DATABASE_URL", "postgresql:///postgres?host=/var/run/postgresql")
ORG: Final = "bench"
END: Final = datetime(2026, 1, 1, tzinfo=UTC)  # hour- and day-aligned: the charts end here
SPAN: Final = timedelta(days=90)
CHART_SPAN: Final = timedelta(days=30)
CHART_METRIC: Final = "heart_rate"
LATEST_PATIENTS: Final = 50
CHUNK: Final = 1_000_000  # rows per INSERT ... SELECT transaction

# What a home kit sends, in turn, for each patient: (metric, device, base value, spread).
# Pulse oximeter readings dominate; cuff and thermometer readings are rarer.
CYCLE: Final = (
    ("heart_rate", "oximeter", 60.0, 40.0),
    ("spo2", "oximeter", 92.0, 8.0),
    ("heart_rate", "oximeter", 60.0, 40.0),
    ("spo2", "oximeter", 92.0, 8.0),
    ("respiratory_rate", "oximeter", 12.0, 10.0),
    ("bp_systolic", "cuff", 100.0, 60.0),
    ("bp_diastolic", "cuff", 60.0, 40.0),
    ("bp_mean", "cuff", 75.0, 40.0),
    ("body_temperature", "thermometer", 36.0, 2.5),
    ("heart_rate", "cuff", 60.0, 40.0),
)
DEVICES: Final = tuple(sorted({d for _, d, _, _ in CYCLE}))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def url_for(dbname: str) -> str:
    return database_url(ADMIN_URL, dbname)


def patient_id(p: int) -> str:
    return f"pat-{p:05d}"


def seed_fleet(conn: Connection, patients: int, *, end: datetime = END) -> None:
    """The organisation, patients, their (active) agents, assignments and devices."""
    with conn.transaction():
        bs.seed_fleet(conn, org=ORG, patients=patients, start=end - SPAN - timedelta(days=1), devices=DEVICES)


def load_readings(conn: Connection, rows: int, patients: int, *, end: datetime = END) -> list[float]:
    """``rows`` readings in arrival order over the ``SPAN`` before ``end``: reading ``i`` is
    patient ``i % patients`` at ``t0 + i * step``.

    One patient's consecutive readings are ``patients`` rows apart in the heap, as when every
    patient's agent uploads as it measures. Each patient's agent numbers its readings 1, 2, ...
    Returns each chunk's own rate (rows/s): whether inserting slows as the table grows.
    """
    bs.set_seed(conn, 0.42)
    started = time.monotonic()
    rates = []
    for lo in range(0, rows, CHUNK):
        hi = min(lo + CHUNK, rows)
        chunk_started = time.monotonic()
        with conn.transaction():
            bs.load_readings_chunk(
                conn, org=ORG, lo=lo, hi=hi, patients=patients, cycle=CYCLE, t0=end - SPAN, step=SPAN / rows
            )
        rates.append(round((hi - lo) / (time.monotonic() - chunk_started)))
        log(f"loaded {hi:,} rows ({hi / (time.monotonic() - started):,.0f} rows/s, this chunk {rates[-1]:,})")
    # The load bypasses store.readings.insert_readings: the panel's summaries are computed once.
    with conn.transaction():
        summaries.rebuild(conn)
    log("panel summaries rebuilt (reading_buckets, latest_readings)")
    return rates


def measure_insert(conn: Connection, patients: int, batches: int, batch_rows: int) -> dict[str, Any]:
    """Ingest's write path on the loaded table: ``batches`` transactions of ``batch_rows`` readings
    each through ``store.readings.insert_readings`` (COPY into the session's staging table, one
    ``INSERT ... ON CONFLICT DO NOTHING``, COMMIT), as an ingest worker writes a batch. The readings
    continue after the loaded ones in time, round-robin over every patient (arrival order), so
    every index takes inserts at its usual places. Reported: the median wall time of a batch and
    the PostgreSQL backend's own CPU (``/proc``, the server runs on this machine) per row."""
    create_staging(conn)
    backend = conn.info.backend_pid
    step = timedelta(seconds=1)
    wall: list[float] = []
    cpu0 = cpu_seconds(backend)
    n = 0
    for b in range(batches):
        rows = []
        for _ in range(batch_rows):
            p = n % patients
            metric, device, base, _spread = CYCLE[(n // patients) % len(CYCLE)]
            rows.append(
                ReadingRow(
                    time=END + n * step,
                    org_id=ORG,
                    patient_id=patient_id(p),
                    agent_id=f"agt-{p:05d}",
                    device_id=f"dev-{p:05d}-{device}",
                    metric=metric,
                    value=base,
                    seq=1_000_000_000 + n,
                    flags=[],
                    device_time=None,
                )
            )
            n += 1
        started = time.perf_counter()
        with conn.transaction():
            stored = insert_readings(conn, rows, staging_ready=True)
        wall.append(1000 * (time.perf_counter() - started))
        if stored != batch_rows:
            raise RuntimeError(f"batch {b}: {stored} of {batch_rows} readings stored")
    cpu1 = cpu_seconds(backend)
    db_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return {
        "insert_batches": batches,
        "insert_batch_rows": batch_rows,
        "insert_batch_ms_median": round(statistics.median(wall), 2),
        "insert_wall_us_per_row": round(1000 * statistics.median(wall) / batch_rows, 1),
        "insert_db_cpu_us_per_row": None if db_cpu is None else round(1e6 * db_cpu / n, 1),
    }


def distinct_on_query(
    *, org: str, patients: Sequence[str], metrics: Sequence[str] | None = None
) -> tuple[bs.Query, dict[str, Any]]:
    """The baseline for ``latest_query``: same rows, but it reads every row of every patient."""
    chosen = sorted(METRIC_NAMES) if metrics is None else list(metrics)
    return bs.distinct_on_latest_query(org=org, patients=patients, metrics=chosen)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def explain(conn: Connection, query: bs.Query, params: dict[str, Any]) -> dict[str, Any]:
    """One ``EXPLAIN (ANALYZE, BUFFERS)`` run, summarised."""
    doc = bs.explain_analyze(conn, query, params)
    top = doc["Plan"]
    scans = [n for n in _nodes(top) if n.get("Relation Name") == "readings"]
    index_only = [n for n in scans if n["Node Type"] == "Index Only Scan"]
    bitmap = [n for n in scans if n["Node Type"] == "Bitmap Heap Scan"]
    heap_pages: int | None = None  # an Index Scan does not say how many of its buffers were heap pages
    if index_only and len(index_only) == len(scans):
        heap_pages = sum(int(n["Heap Fetches"]) for n in index_only)
    elif bitmap and len(bitmap) == len(scans):
        heap_pages = sum(int(n.get("Exact Heap Blocks", 0)) + int(n.get("Lossy Heap Blocks", 0)) for n in bitmap)
    return {
        "execution_ms": round(float(doc["Execution Time"]), 2),
        "shared_hit": int(top["Shared Hit Blocks"]),
        "shared_read": int(top["Shared Read Blocks"]),
        "buffers": int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"]),
        "scan_nodes": sorted({str(n["Node Type"]) for n in scans}),
        "index_only": bool(scans) and len(index_only) == len(scans),
        # "Heap Fetches" exists only on Index Only Scan nodes: None when there is none.
        "heap_fetches": sum(int(n["Heap Fetches"]) for n in index_only) if index_only else None,
        "heap_pages": heap_pages,
        # EXPLAIN reports rows per loop, rounded: approximate for the LATERAL probes.
        "readings_rows_scanned": sum(round(float(n["Actual Rows"]) * int(n["Actual Loops"])) for n in scans),
    }


def timed(
    conn: Connection, query: bs.Query, params: dict[str, Any], repeat: int
) -> tuple[float, float, list[tuple[Any, ...]]]:
    """(first run ms, median of ``repeat`` further runs ms, rows), wall time including the round trip."""
    times, rows = [], []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        rows = bs.fetch_all(conn, query, params)
        times.append(1000 * (time.perf_counter() - started))
    return round(times[0], 2), round(statistics.median(times[1:]), 2), rows


def measure_latest(conn: Connection, patients: int, repeat: int) -> dict[str, Any]:
    chosen = [patient_id(p) for p in range(0, patients, max(1, patients // LATEST_PATIENTS))][:LATEST_PATIENTS]
    lateral, lateral_params = latest_query(org=ORG, patients=chosen)
    distinct, distinct_params = distinct_on_query(org=ORG, patients=chosen)
    lat_first, lat_ms, lat_rows = timed(conn, lateral, lateral_params, repeat)
    log(f"latest, LATERAL: {lat_ms} ms")
    dist_first, dist_ms, dist_rows = timed(conn, distinct, distinct_params, repeat)
    log(f"latest, DISTINCT ON: {dist_ms} ms")
    return {
        "latest_patients": len(chosen),
        "latest_rows": len(lat_rows),
        "latest_rows_agree": sorted(lat_rows) == sorted(dist_rows),
        "latest_lateral_ms": lat_ms,
        "latest_lateral_first_ms": lat_first,
        "latest_distinct_on_ms": dist_ms,
        "latest_distinct_on_first_ms": dist_first,
        "latest_speedup": round(dist_ms / lat_ms, 1) if lat_ms else None,
        "latest_lateral_plan": explain(conn, lateral, lateral_params),
        "latest_distinct_on_plan": explain(conn, distinct, distinct_params),
    }


def measure_chart(conn: Connection, patient: str, bucket: timedelta, repeat: int) -> dict[str, Any]:
    start = END - CHART_SPAN
    query, params = series_query(
        "postgres", org=ORG, patient=patient, metric=CHART_METRIC, start=start, end=END, bucket=bucket
    )
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        buckets = series(
            conn, "postgres", org=ORG, patient=patient, metric=CHART_METRIC, start=start, end=END, bucket=bucket
        )
        times.append(1000 * (time.perf_counter() - started))
    plan = explain(conn, query, params)
    aggregated = sum(b.count for b in buckets)
    return {
        "ms": round(statistics.median(times[1:]), 2),
        "first_ms": round(times[0], 2),
        "buckets": len(buckets),
        "rows_aggregated": aggregated,
        "buffers_per_row": round(plan["buffers"] / aggregated, 3) if aggregated else None,
        "heap_pages_per_row": (
            round(plan["heap_pages"] / aggregated, 3) if aggregated and plan["heap_pages"] is not None else None
        ),
        "plan": plan,
    }


def sizes(conn: Connection) -> dict[str, Any]:
    mb = 1024 * 1024
    heap, table, indexes, per_index = bs.readings_sizes(conn)
    return {
        "table_mb": round(table / mb, 1),
        "heap_mb": round(heap / mb, 1),
        "index_mb": round(indexes / mb, 1),
        "index_mb_by_name": {name: round(size / mb, 1) for name, size in per_index},
    }


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    migrate(url, flavor="postgres")
    result: dict[str, Any] = {"rows": args.rows, "patients": args.patients}
    with connect(url, application_name="vigil-bench") as conn:
        seed_fleet(conn, args.patients)
        started = time.monotonic()
        rates = load_readings(conn, args.rows, args.patients)
        result["load_s"] = round(time.monotonic() - started, 1)
        result["load_rows_per_s"] = round(args.rows / max(result["load_s"], 1e-3))
        result["load_chunk_rows"] = CHUNK
        result["load_chunk_rows_per_s"] = rates
        started = time.monotonic()
        bs.vacuum_analyze(conn, "readings")
        result["vacuum_analyze_s"] = round(time.monotonic() - started, 1)
        log(f"loaded in {result['load_s']} s, VACUUM ANALYZE {result['vacuum_analyze_s']} s")
        result.update(sizes(conn))
        result.update(measure_latest(conn, args.patients, args.repeat))
        # A patient the latest query did not touch, so the first chart run starts cold.
        chart_patient = patient_id(args.patients // 2 + 1)
        hourly = measure_chart(conn, chart_patient, timedelta(hours=1), args.repeat)
        log(f"30-day chart, hourly: {hourly['ms']} ms")
        daily = measure_chart(conn, chart_patient, timedelta(days=1), args.repeat)
        log(f"30-day chart, daily: {daily['ms']} ms")
        result.update(measure_insert(conn, args.patients, args.insert_batches, args.insert_batch_rows))
        log(f"insert through store.readings: {result['insert_batch_ms_median']} ms per batch")
        result["server_version"] = conn.info.server_version
    result.update(
        {
            "chart_30d_hourly_ms": hourly["ms"],
            "chart_30d_hourly_first_ms": hourly["first_ms"],
            "chart_30d_daily_ms": daily["ms"],
            "chart_30d_daily_first_ms": daily["first_ms"],
            "chart_rows_aggregated": hourly["rows_aggregated"],
            "chart_buffers": hourly["plan"]["buffers"],
            "chart_heap_fetches": hourly["plan"]["heap_fetches"],
            "chart_index_only": hourly["plan"]["index_only"],
            "chart_heap_pages": hourly["plan"]["heap_pages"],
            "chart_buffers_per_row": hourly["buffers_per_row"],
            "chart_heap_pages_per_row": hourly["heap_pages_per_row"],
            "chart_30d_hourly": hourly,
            "chart_30d_daily": daily,
            "repeat": args.repeat,
            "cores": os.cpu_count(),
        }
    )
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs after the first; the median is reported")
    ap.add_argument("--insert-batches", type=int, default=500, help="ingest-shaped batches inserted after the load")
    ap.add_argument("--insert-batch-rows", type=int, default=100, help="readings per inserted batch")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args(argv)
    if args.rows < args.patients * len(CYCLE):
        ap.error("--rows must give every patient at least one full cycle of metrics")
    name = f"vigil_bench_store_{secrets.token_hex(4)}"
    create_database(ADMIN_URL, name)
    log(f"database {name}")
    started = time.monotonic()
    try:
        result = run(url_for(name), args)
    finally:
        if not args.keep:
            drop_database(ADMIN_URL, name)
    result["database"], result["database_kept"] = name, args.keep
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

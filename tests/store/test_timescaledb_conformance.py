"""The TimescaleDB migration path and the reading queries, run in a real TimescaleDB engine.

TimescaleDB cannot be installed on the CI machine, so this drives PGlite (PostgreSQL 17 compiled to
WASM, with timescaledb 2.23) in-process from Node (tests/store/timescale/run_sql.mjs). The same data
goes into the plain-PostgreSQL test database, and every query must give the same answer on both
paths. PGlite has no background scheduler, so policies are run with ``run_job``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from store.feed import page_query
from store.migrate import load_migrations
from store.readings import ReadingRow, insert_readings, latest, latest_query, series, series_query

RUNNER_DIR = Path(__file__).parent / "timescale"
# Recent data, so that the refresh policies' windows (relative to now) cover it.
T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=4)


def node_runner() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the TimescaleDB conformance check needs Node.js (apt-get install nodejs)")
    if not (RUNNER_DIR / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install PGlite"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=RUNNER_DIR, check=True, timeout=600)
    return [node, str(RUNNER_DIR / "run_sql.mjs")]


def run(steps: list[dict[str, str]]) -> dict[str, Any]:
    proc = subprocess.run(
        node_runner(), input=json.dumps({"steps": steps}), capture_output=True, text=True, timeout=600, check=False
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if proc.returncode != 0:
        pytest.fail(f"TimescaleDB rejected step {out.get('step')}: {out.get('error')}\n{out.get('sql')}")
    return out


def dataset() -> list[ReadingRow]:
    rows = []
    seq = 0
    for patient, agent in (("p1", "a1"), ("p2", "a2")):
        for i in range(3 * 24 * 6):  # three days every 10 minutes
            t = T0 + timedelta(minutes=10 * i)
            for metric, value in (("heart_rate", 60 + (i * 7) % 40), ("spo2", 90 + (i * 3) % 10)):
                seq += 1
                rows.append(ReadingRow(t, "o1", patient, agent, "dev-" + agent, metric, float(value), seq, ["x"], None))
    return rows


def literal_insert(conn: psycopg.Connection[Any], rows: list[ReadingRow]) -> str:
    values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in r)) for r in rows)
    cols = sql.SQL(", ").join(map(sql.Identifier, ReadingRow._fields))
    return (
        sql.SQL("INSERT INTO readings ({}) VALUES {} ON CONFLICT (agent_id, seq, time) DO NOTHING")
        .format(cols, values)
        .as_string(conn)
    )


def test_timescaledb_path_matches_plain_postgres(db: str) -> None:
    rows = dataset()
    cases = [
        ("p1", "heart_rate", T0, T0 + timedelta(days=3), timedelta(hours=1)),  # hourly aggregate
        ("p2", "spo2", T0, T0 + timedelta(days=3), timedelta(days=1)),  # daily aggregate
        ("p1", "spo2", T0 + timedelta(minutes=5), T0 + timedelta(hours=7), timedelta(minutes=30)),  # raw rows
        ("p2", "heart_rate", T0, T0 + timedelta(days=2), timedelta(hours=6)),  # re-bucketed hourly aggregate
    ]
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        conn.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1','o1','A'), ('p2','o1','B')")
        conn.execute("INSERT INTO agents (agent_id, org_id) VALUES ('a1','o1'), ('a2','o1')")
        insert_readings(conn, rows)
        conn.commit()
        expected_series = [
            [
                (b.start, b.min, b.max, b.avg, b.count)
                for b in series(conn, "postgres", org="o1", patient=p, metric=m, start=s, end=e, bucket=b)
            ]
            for p, m, s, e, b in cases
        ]
        expected_latest = [
            (v.patient_id, v.metric, v.time, v.value) for v in latest(conn, org="o1", patients=["p1", "p2", "p9"])
        ]

        cur = psycopg.ClientCursor(conn)
        steps: list[dict[str, str]] = []
        for m in load_migrations():
            steps.append({"mode": "exec", "sql": f"BEGIN;\n{m.sql_for('timescaledb')}\nCOMMIT;"})
        steps.append({"mode": "exec", "sql": "INSERT INTO organizations VALUES ('o1', 'Clinic');"})
        for chunk in range(0, len(rows), 500):
            steps.append({"mode": "exec", "sql": literal_insert(conn, rows[chunk : chunk + 500])})
        steps.append({"mode": "exec", "sql": literal_insert(conn, rows[:300])})  # duplicates are absorbed
        steps.append({"mode": "query", "sql": "CALL refresh_continuous_aggregate('readings_hourly', NULL, NULL)"})
        steps.append({"mode": "query", "sql": "CALL refresh_continuous_aggregate('readings_daily', NULL, NULL)"})
        steps.append({"mode": "query", "sql": "SELECT count(compress_chunk(c)) AS n FROM show_chunks('readings') c"})
        # A late duplicate and a late new reading into a compressed chunk.
        late = ReadingRow(T0 + timedelta(minutes=3), "o1", "p1", "a1", "dev-a1", "heart_rate", 61.0, 999_999, [], None)
        steps.append({"mode": "exec", "sql": literal_insert(conn, [rows[0], late])})
        # The refresh policies (job ids are assigned in migration order in a fresh database) pick
        # up the late row: run them as the scheduler would.
        steps.append({"mode": "query", "sql": "CALL run_job(1002)"})
        steps.append({"mode": "query", "sql": "CALL run_job(1003)"})
        queries_start = len(steps)
        for p, m, s, e, b in cases:
            q, params = series_query("timescaledb", org="o1", patient=p, metric=m, start=s, end=e, bucket=b)
            steps.append({"mode": "query", "sql": cur.mogrify(q, params)})
        q, params = latest_query(org="o1", patients=["p1", "p2", "p9"])
        steps.append({"mode": "query", "sql": cur.mogrify(q, params)})
        steps.append({"mode": "query", "sql": "SELECT count(*) AS n FROM readings"})
        q2, params2 = page_query(0, 2**40, 5)
        steps.append({"mode": "query", "sql": cur.mogrify(q2, params2)})
        steps.append(
            {
                "mode": "query",
                "sql": (
                    "SELECT job_id, proc_name, hypertable_name FROM timescaledb_information.jobs "
                    "WHERE job_id >= 1000 ORDER BY job_id"
                ),
            }
        )
        steps.append(
            {
                "mode": "query",
                "sql": (
                    "SELECT attname, segmentby_column_index, orderby_column_index FROM "
                    "timescaledb_information.compression_settings WHERE hypertable_name = 'readings' ORDER BY attname"
                ),
            }
        )

    out = run(steps)
    results = out["results"][queries_start:]
    assert out["timescaledb_version"].startswith("2.")
    assert int(out["results"][queries_start - 4]["rows"][0]["n"]) >= 3  # at least one chunk per day compressed

    def ts(v: str) -> datetime:
        return datetime.fromisoformat(v)

    # The late reading changes p1's first hour; apply it to the plain-path expectation.
    for i, (p, m, *_rest) in enumerate(cases):
        got = [tuple(r.values()) for r in results[i]["rows"]]
        got = [(ts(g[0]), float(g[1]), float(g[2]), float(g[3]), int(g[4])) for g in got]
        want = expected_series[i]
        if (p, m) == ("p1", "heart_rate"):
            s0, mn, mx, avg, n = want[0]
            want = [(s0, min(mn, 61.0), mx, (avg * n + 61.0) / (n + 1), n + 1), *want[1:]]
        assert len(got) == len(want), (p, m)
        for g, w in zip(got, want, strict=True):
            assert (g[0], g[1], g[2], g[4]) == (w[0], w[1], w[2], w[4])
            assert math.isclose(g[3], w[3], rel_tol=1e-9)
    got_latest = [(r["patient_id"], r["metric"], ts(r["time"]), float(r["value"])) for r in results[len(cases)]["rows"]]
    assert got_latest == expected_latest
    assert results[len(cases) + 1]["rows"][0]["n"] == len(rows) + 1
    assert len(results[len(cases) + 2]["rows"]) == 5
    jobs = [(r["job_id"], r["proc_name"]) for r in results[len(cases) + 3]["rows"]]
    assert jobs == [
        (1000, "policy_compression"),
        (1001, "policy_retention"),
        (1002, "policy_refresh_continuous_aggregate"),
        (1003, "policy_refresh_continuous_aggregate"),
    ]
    settings = {
        r["attname"]: (r["segmentby_column_index"], r["orderby_column_index"]) for r in results[len(cases) + 4]["rows"]
    }
    assert (settings["patient_id"][0], settings["metric"][0]) == (1, 2)
    assert settings["time"][1] == 1

"""The SQL of the benchmarks (``bench/``): synthetic fleets and readings in bulk, plans and sizes.

Only store speaks SQL (import-linter): the benchmarks hold a :data:`~store.connection.Connection`
and call these. Nothing here is used by a running service; it writes scratch databases that
``store.admin`` creates and drops. Bulk rows are generated inside the server (``generate_series``),
not sent row by row. Identifiers follow the benchmarks' scheme: patient ``pat-00042`` has agent
``agt-00042`` and devices ``dev-00042-<profile>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias

from psycopg import sql
from psycopg.types.json import Jsonb

from store.connection import Connection

# A statement store composed (``store.readings.latest_query`` ...), passed back into store to run.
Query: TypeAlias = sql.Composed

__all__ = [
    "Query",
    "agent_keys",
    "check_ranges",
    "client_backend_pids",
    "disable_audit_log",
    "distinct_on_latest_query",
    "email_waits_ms",
    "enable_audit_log",
    "explain_analyze",
    "fetch_all",
    "has_organization",
    "insert_alerts_for_panel",
    "insert_org",
    "insert_patients",
    "insert_reading_naively",
    "load_readings_chunk",
    "newest_reading_time",
    "readings_of_agents",
    "readings_sizes",
    "readings_table_size",
    "receipts_through_sum",
    "seed_fleet",
    "set_seed",
    "stand_in_read",
    "vacuum_analyze",
]


def insert_org(conn: Connection, org_id: str, name: str) -> None:
    conn.execute("INSERT INTO organizations (org_id, name) VALUES (%s, %s)", (org_id, name))


def has_organization(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM organizations LIMIT 1").fetchone() is not None


def insert_patients(
    conn: Connection, org_id: str, patients: Iterable[tuple[str, str, Mapping[str, Any] | None]]
) -> None:
    """(patient id, display name, settings document or None) each."""
    for patient_id, display_name, settings in patients:
        conn.execute(
            "INSERT INTO patients (patient_id, org_id, display_name, settings) VALUES (%s, %s, %s, %s)",
            (patient_id, org_id, display_name, Jsonb(dict(settings or {}))),
        )


def seed_fleet(conn: Connection, *, org: str, patients: int, start: datetime, devices: Sequence[str]) -> None:
    """The organisation, ``patients`` patients, their (active) agents, assignments and devices."""
    params = {"org": org, "n": patients, "start": start}
    conn.execute("INSERT INTO organizations (org_id, name) VALUES (%s, 'Bench clinic')", (org,))
    conn.execute(
        "INSERT INTO patients (patient_id, org_id, display_name, created_at) "
        "SELECT 'pat-' || lpad(p::text, 5, '0'), %(org)s, 'Bench Patient ' || p, %(start)s "
        "FROM generate_series(0, %(n)s - 1) AS p",
        params,
    )
    conn.execute(
        "INSERT INTO agents (agent_id, org_id, status, sign_public_key, sign_kid, kex_public_key, kex_kid, "
        "  agent_version, created_at, activated_at) "
        "SELECT 'agt-' || lpad(p::text, 5, '0'), %(org)s, 'active', "
        "  decode(md5('sign' || p) || md5('sign2' || p), 'hex'), 'sign-' || p, "
        "  decode(md5('kex' || p) || md5('kex2' || p), 'hex'), 'kex-' || p, 'bench', %(start)s, %(start)s "
        "FROM generate_series(0, %(n)s - 1) AS p",
        params,
    )
    conn.execute(
        "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) "
        "SELECT 'agt-' || lpad(p::text, 5, '0'), %(org)s, 'pat-' || lpad(p::text, 5, '0'), %(start)s "
        "FROM generate_series(0, %(n)s - 1) AS p",
        params,
    )
    conn.execute(
        "INSERT INTO devices (device_id, org_id, agent_id, profile, first_seen_at) "
        "SELECT 'dev-' || lpad(p::text, 5, '0') || '-' || d, %(org)s, 'agt-' || lpad(p::text, 5, '0'), d, %(start)s "
        "FROM generate_series(0, %(n)s - 1) AS p CROSS JOIN unnest(%(devices)s::text[]) AS d",
        {**params, "devices": list(devices)},
    )


_LOAD: Final = """
INSERT INTO readings (time, org_id, patient_id, agent_id, device_id, metric, value, seq, received_at)
SELECT t, %(org)s, 'pat-' || lpad(p::text, 5, '0'), 'agt-' || lpad(p::text, 5, '0'),
       'dev-' || lpad(p::text, 5, '0') || '-' || (%(devices)s::text[])[c],
       (%(metrics)s::text[])[c],
       round(((%(base)s::float8[])[c] + (%(spread)s::float8[])[c] * random())::numeric, 1)::float8,
       k + 1,
       t + interval '2 seconds' + random() * interval '30 seconds'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
CROSS JOIN LATERAL (SELECT (i %% %(patients)s)::int AS p, i / %(patients)s AS k) AS pk
CROSS JOIN LATERAL (SELECT (k %% %(cycle)s)::int + 1 AS c, %(t0)s + i * %(step)s::interval AS t) AS ct
"""


def set_seed(conn: Connection, seed: float) -> None:
    """Seed the session's ``random()`` so that generated values repeat from run to run."""
    conn.execute("SELECT setseed(%s)", (seed,))


def load_readings_chunk(
    conn: Connection,
    *,
    org: str,
    lo: int,
    hi: int,
    patients: int,
    cycle: Sequence[tuple[str, str, float, float]],
    t0: datetime,
    step: timedelta,
) -> None:
    """Readings ``lo`` .. ``hi - 1`` in arrival order: reading ``i`` is patient ``i % patients`` at
    ``t0 + i * step``, the metric ``cycle[k % len(cycle)]`` (metric, device, base value, spread) of
    that patient's ``k``-th reading, numbered ``k + 1`` by its agent."""
    conn.execute(
        _LOAD,
        {
            "org": org,
            "patients": patients,
            "cycle": len(cycle),
            "metrics": [m for m, _, _, _ in cycle],
            "devices": [d for _, d, _, _ in cycle],
            "base": [b for _, _, b, _ in cycle],
            "spread": [s for _, _, _, s in cycle],
            "t0": t0,
            "step": step,
            "lo": lo,
            "hi": hi,
        },
    )


def distinct_on_latest_query(
    *, org: str, patients: Sequence[str], metrics: Sequence[str]
) -> tuple[sql.Composed, dict[str, Any]]:
    """The baseline for ``store.readings.latest_query``: same rows, but it reads every row of every patient."""
    query = sql.SQL(
        "SELECT DISTINCT ON (patient_id, metric) patient_id, metric, time, value, device_id FROM readings "
        "WHERE org_id = %(org)s AND patient_id = ANY(%(patients)s::text[]) AND metric = ANY(%(metrics)s::text[]) "
        "ORDER BY patient_id, metric, time DESC"
    ).format()
    return query, {"org": org, "patients": list(patients), "metrics": list(metrics)}


def fetch_all(conn: Connection, query: sql.Composed, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run a query store built (``latest_query``, ``series_query``, ...) and return its rows."""
    return conn.execute(query, params).fetchall()


def explain_analyze(conn: Connection, query: sql.Composed, params: Mapping[str, Any]) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` of a query store built: the plan document."""
    row = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(query), params).fetchone()
    if row is None:
        raise LookupError("EXPLAIN returned no plan")
    doc: dict[str, Any] = row[0][0]
    return doc


def vacuum_analyze(conn: Connection, table: str | None = None) -> None:
    """``VACUUM ANALYZE`` one table (or the whole database); ``conn`` must be in autocommit mode."""
    if table is None:
        conn.execute("VACUUM ANALYZE")
    else:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def newest_reading_time(conn: Connection) -> datetime | None:
    """The measured time of the newest reading (a reused benchmark database's end)."""
    row = conn.execute("SELECT max(time) FROM readings").fetchone()
    return None if row is None else row[0]


def readings_sizes(conn: Connection) -> tuple[int, int, int, list[tuple[str, int]]]:
    """Bytes of ``readings``: (heap, table with TOAST, all indexes, [(index, bytes)] by name)."""
    row = conn.execute(
        "SELECT pg_relation_size('readings'), pg_table_size('readings'), pg_indexes_size('readings')"
    ).fetchone()
    if row is None:
        raise LookupError("no size for readings")
    per_index = conn.execute(
        "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
        "WHERE indrelid = 'readings'::regclass ORDER BY 1"
    ).fetchall()
    return int(row[0]), int(row[1]), int(row[2]), [(str(n), int(s)) for n, s in per_index]


def insert_alerts_for_panel(conn: Connection, *, org: str, at: datetime, panel: int) -> None:
    """An open alert for every fifth of patients ``0 .. panel - 1``, severities in turn, a minute apart."""
    conn.execute(
        "INSERT INTO alerts (org_id, patient_id, rule, kind, metric, severity, summary, evidence, opened_at, "
        "updated_at, last_triggered_at) SELECT %s, 'pat-' || lpad(p::text, 5, '0'), 'threshold:spo2:low', "
        "'threshold', 'spo2', (ARRAY['low','medium','high','critical'])[1 + p %% 4], 'bench alert', '[]', "
        "%s - p * interval '1 minute', %s, %s FROM generate_series(0, %s - 1, 5) AS p",
        (org, at, at, at, panel),
    )


def disable_audit_log(conn: Connection) -> None:
    """Make audit writes vanish (a view whose INSTEAD OF trigger drops the row), to measure the audit's
    share of a request; :func:`enable_audit_log` puts the table back."""
    conn.execute(
        """
        ALTER TABLE audit_log RENAME TO audit_log_stored;
        CREATE VIEW audit_log AS SELECT * FROM audit_log_stored;
        CREATE FUNCTION bench_audit_discard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.audit_id := 0; RETURN NEW; END $$;
        CREATE TRIGGER bench_audit_discard INSTEAD OF INSERT ON audit_log
            FOR EACH ROW EXECUTE FUNCTION bench_audit_discard();
        GRANT SELECT, INSERT ON audit_log TO vigil_app;
        """
    )


def enable_audit_log(conn: Connection) -> None:
    conn.execute(
        """
        DROP VIEW audit_log;
        DROP FUNCTION bench_audit_discard();
        ALTER TABLE audit_log_stored RENAME TO audit_log;
        """
    )


def stand_in_read(conn: Connection, i: int) -> None:
    """A small indexed read, the stand-in for a request's own work in the audit benchmark."""
    conn.execute("SELECT count(*) FROM schema_migrations WHERE version = %s", (i % 20,))


def email_waits_ms(conn: Connection) -> list[float]:
    """Per e-mail delivery attempt: milliseconds from queueing to the attempt's start."""
    return [
        float(r[0]) * 1000
        for r in conn.execute(
            "SELECT extract(epoch FROM a.started_at - o.created_at) FROM notification_attempts a "
            "JOIN notification_outbox o USING (outbox_id) WHERE o.channel = 'email'"
        )
    ]


def check_ranges(conn: Connection, ranges: Iterable[tuple[str, int, int]]) -> tuple[int, int, int]:
    """Published (agent, first seq, last seq) ranges against ``readings``: (expected (agent, seq) pairs,
    distinct ones stored, rows stored: duplicates count)."""
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE expect (agent_id text, first_seq bigint, last_seq bigint) ON COMMIT DROP")
        with conn.cursor().copy("COPY expect FROM STDIN") as copy:
            for row in ranges:
                copy.write_row(row)
        found = conn.execute(
            "SELECT (SELECT coalesce(sum(last_seq - first_seq + 1), 0) FROM expect), "
            "count(DISTINCT (r.agent_id, r.seq)), count(*) FROM readings r "
            "JOIN expect e ON r.agent_id = e.agent_id AND r.seq BETWEEN e.first_seq AND e.last_seq"
        ).fetchone()
    if found is None:
        raise LookupError("no count")
    return int(found[0]), int(found[1]), int(found[2])


def readings_table_size(conn: Connection) -> tuple[int, int]:
    """(rows in ``readings``, its bytes on disk: heap, indexes and TOAST)."""
    row = conn.execute("SELECT count(*), pg_total_relation_size('readings') FROM readings").fetchone()
    if row is None:
        raise LookupError("no size for readings")
    return int(row[0]), int(row[1])


def receipts_through_sum(conn: Connection) -> int:
    """The sum of every agent's receipt high-water mark (readings committed and acknowledged)."""
    row = conn.execute("SELECT coalesce(sum(through), 0) FROM agent_receipts").fetchone()
    return int(row[0]) if row else 0


def readings_of_agents(conn: Connection, prefix: str) -> int:
    """Readings stored for agents whose id starts with ``prefix``."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found = conn.execute("SELECT count(*) FROM readings WHERE agent_id LIKE %s", (pattern,)).fetchone()
    return int(found[0]) if found else 0


def client_backend_pids(conn: Connection) -> list[int]:
    """Process ids of the other client sessions on this database."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchall()
    ]


def agent_keys(conn: Connection) -> list[tuple[str, bytes, bytes, str]]:
    """Active agents: (agent id, signing public key, key-exchange public key, assigned patient)."""
    return [
        (str(a), bytes(s), bytes(k), str(p))
        for a, s, k, p in conn.execute(
            "SELECT a.agent_id, a.sign_public_key, a.kex_public_key, s.patient_id FROM agents a "
            "JOIN agent_assignments s ON s.agent_id = a.agent_id AND s.valid_to IS NULL WHERE a.status = 'active'"
        )
    ]


def insert_reading_naively(conn: Connection, row: Sequence[Any]) -> None:
    """One INSERT for one reading (time, org, patient, agent, device, metric, value, seq, flags): the
    naive baseline ingest is measured against."""
    conn.execute(
        "INSERT INTO readings (time, org_id, patient_id, agent_id, device_id, metric, value, seq, flags) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        row,
    )


def evaluated_and_alerts(conn: Connection, org: str) -> tuple[int, int]:
    """(readings of ``org`` behind every alert-engine partition's watermark, alerts opened for ``org``)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM readings WHERE org_id = %s AND ingest_xid::text::bigint < "
        "  (SELECT coalesce(min(watermark), 0) FROM alert_watermarks)), "
        "(SELECT count(*) FROM alerts WHERE org_id = %s)",
        (org, org),
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))

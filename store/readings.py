"""The readings aggregate: idempotent batch insert, charts (bucketed series), latest values and the
alert engine's windows of recent readings.

Both database flavours answer the same questions with the same bucket boundaries (buckets are
aligned to 2000-01-01T00:00Z): on TimescaleDB an hour- or day-aligned chart reads the continuous
aggregates, anything else the raw rows; on plain PostgreSQL the raw rows through the covering index
``readings_patient_metric_time`` with ``date_bin``.

Every query is scoped by organisation as well as patient. Query builders are public so that the
TimescaleDB conformance test can run exactly this SQL against a real TimescaleDB engine.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, NamedTuple

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from rpm_core.metrics import METRIC_NAMES

__all__ = [
    "BUCKET_ORIGIN",
    "READING_COLUMNS",
    "Bucket",
    "LatestValue",
    "ReadingRow",
    "WindowReading",
    "create_staging",
    "insert_readings",
    "latest",
    "latest_query",
    "readings_since_time",
    "readings_windows",
    "series",
    "series_query",
]

BUCKET_ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
_HOUR: Final = timedelta(hours=1)
_DAY: Final = timedelta(days=1)


_COPY_TYPES: Final = ["timestamptz", "text", "text", "text", "text", "text", "float8", "int8", "text[]", "text"]


class ReadingRow(NamedTuple):
    """A reading as stored: the Reading plus the patient and organisation it was mapped to.

    Ingest writes it (:func:`insert_readings`); the feed (``store.feed``) reads it back."""

    time: datetime
    org_id: str
    patient_id: str
    agent_id: str
    device_id: str
    metric: str
    value: float
    seq: int
    flags: list[str]
    device_time: str | None


# The stored columns, in the row's order (COPY writes them so; the feed reads them back so).
READING_COLUMNS: Final = ReadingRow._fields


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    min: float
    max: float
    avg: float
    count: int


@dataclass(frozen=True, slots=True)
class WindowReading:
    patient_id: str
    time: datetime
    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class LatestValue:
    patient_id: str
    metric: str
    time: datetime
    value: float
    device_id: str


_TEXT_OID: Final = 25
_TEXT_ARRAY_OID: Final = 1009
_ARRAY_HEAD: Final = struct.Struct("!iii")  # ndim, has null, element type
_INT32: Final = struct.Struct("!i")


class _FlagsKey(tuple[str, ...]):
    """Only a registration key: the dumper below is looked up by the text[] oid in COPY."""


class _FlagsBinaryDumper(Dumper):
    """Binary ``text[]`` of a flags list, memoised per distinct flags tuple.

    psycopg's generic list dumper is pure Python and was most of the client's COPY cost per row;
    there are only a handful of distinct flag sets, so each one is encoded once per connection
    encoding. The bytes are PostgreSQL's array send format, as psycopg's dumper writes them
    (tests/store/test_readings_copy.py compares both).
    """

    format = Format.BINARY
    oid = _TEXT_ARRAY_OID
    _memo: ClassVar[dict[tuple[str, tuple[str | None, ...]], bytes]] = {}

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        self._encoding = self.connection.info.encoding if self.connection is not None else "utf-8"

    def dump(self, obj: Any) -> bytes:
        key = (self._encoding, tuple(obj))
        data = self._memo.get(key)
        if data is None:
            data = _text_array(key[1], self._encoding)
            if len(self._memo) >= 1024:
                self._memo.clear()
            self._memo[key] = data
        return data


def _text_array(items: tuple[str | None, ...], encoding: str) -> bytes:
    if not items:
        return _ARRAY_HEAD.pack(0, 0, _TEXT_OID)
    parts = [b""]
    hasnull = 0
    for item in items:
        if item is None:
            hasnull = 1
            parts.append(_INT32.pack(-1))
        else:
            raw = item.encode(encoding)
            parts.append(_INT32.pack(len(raw)))
            parts.append(raw)
    parts[0] = _ARRAY_HEAD.pack(1, hasnull, _TEXT_OID) + struct.pack("!ii", len(items), 1)
    return b"".join(parts)


_STAGING: Final = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS readings_staging (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)


def create_staging(conn: psycopg.Connection[Any]) -> None:
    """Create this session's staging table now (outside a transaction it lasts for the session):
    then ``insert_readings(..., staging_ready=True)`` needs neither the CREATE nor the TRUNCATE."""
    conn.execute(_STAGING)


def insert_readings(conn: psycopg.Connection[Any], rows: Iterable[ReadingRow], *, staging_ready: bool = False) -> int:
    """Store ``rows`` inside the caller's transaction; return how many were new.

    COPY into a per-session staging table, then one ``INSERT ... ON CONFLICT DO NOTHING``: a
    reading already stored (same agent, sequence and time) is absorbed, also within one batch.
    The caller commits; nothing is visible to watermark consumers before that.

    ``staging_ready``: the caller made the staging table with :func:`create_staging`. COMMIT and
    ROLLBACK empty it (``ON COMMIT DELETE ROWS``, and its rows are the transaction's); rows left by
    an earlier call in the same transaction are already in ``readings`` and conflict, so the count
    stays right without the TRUNCATE (which also gives the table a new file every time).
    """
    cols = sql.SQL(", ").join(map(sql.Identifier, READING_COLUMNS))
    if not staging_ready:
        conn.execute(_STAGING)
    with conn.cursor() as cur:
        # Binary COPY with declared types: psycopg's C dumpers, about a third of the client CPU of
        # text COPY (ingest writes every reading through here); flags through the memoised dumper.
        cur.adapters.register_dumper(_FlagsKey, _FlagsBinaryDumper)
        with cur.copy(sql.SQL("COPY readings_staging ({}) FROM STDIN (FORMAT BINARY)").format(cols)) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        cur.execute(
            sql.SQL(
                "INSERT INTO readings ({cols}) SELECT {cols} FROM readings_staging "
                "ON CONFLICT (agent_id, seq, time) DO NOTHING"
            ).format(cols=cols)
        )
        inserted = cur.rowcount
        if not staging_ready:
            cur.execute("TRUNCATE readings_staging")
    return max(inserted, 0)


def _aligned(t: datetime, step: timedelta) -> bool:
    return (t - BUCKET_ORIGIN) % step == timedelta(0)


def series_query(
    flavor: str,
    *,
    org: str,
    patient: str,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
) -> tuple[sql.Composed, dict[str, Any]]:
    """The SQL (and parameters) for :func:`series`; see the module docstring for the plan."""
    if bucket <= timedelta(0):
        raise ValueError("bucket must be positive")
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}")
    params: dict[str, Any] = {
        "org": org,
        "patient": patient,
        "metric": metric,
        "start": start,
        "end": end,
        "bucket": bucket,
        "origin": BUCKET_ORIGIN,
    }
    cagg: str | None = None
    if flavor == "timescaledb":
        for step, view in ((_DAY, "readings_daily"), (_HOUR, "readings_hourly")):
            if bucket % step == timedelta(0) and _aligned(start, step) and _aligned(end, step):
                cagg = view
                break
    if cagg is not None:
        query = sql.SQL(
            "SELECT time_bucket(%(bucket)s, bucket, origin => %(origin)s) AS b, min(min_value), max(max_value), "
            "sum(sum_value) / sum(n), sum(n)::bigint FROM {view} "
            "WHERE org_id = %(org)s AND patient_id = %(patient)s AND metric = %(metric)s "
            "AND bucket >= %(start)s AND bucket < %(end)s GROUP BY 1 ORDER BY 1"
        ).format(view=sql.Identifier(cagg))
    else:
        binning = (
            sql.SQL("time_bucket(%(bucket)s, time, origin => %(origin)s)")
            if flavor == "timescaledb"
            else sql.SQL("date_bin(%(bucket)s, time, %(origin)s)")
        )
        query = sql.SQL(
            "SELECT {binning} AS b, min(value), max(value), avg(value), count(*) FROM readings "
            "WHERE org_id = %(org)s AND patient_id = %(patient)s AND metric = %(metric)s "
            "AND time >= %(start)s AND time < %(end)s GROUP BY 1 ORDER BY 1"
        ).format(binning=binning)
    return query, params


def series(
    conn: psycopg.Connection[Any],
    flavor: str,
    *,
    org: str,
    patient: str,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
) -> list[Bucket]:
    """A patient's metric over ``[start, end)`` downsampled into buckets of ``bucket``."""
    query, params = series_query(flavor, org=org, patient=patient, metric=metric, start=start, end=end, bucket=bucket)
    rows = conn.execute(query, params).fetchall()
    return [Bucket(r[0], float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows]


def latest_query(
    *, org: str, patients: Sequence[str], metrics: Sequence[str] | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """One index probe per (patient, metric): ``LATERAL ... LIMIT 1`` (``DISTINCT ON`` scans all)."""
    chosen = sorted(METRIC_NAMES) if metrics is None else list(metrics)
    unknown = set(chosen) - METRIC_NAMES
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}")
    query = sql.SQL(
        "SELECT p.patient_id, m.metric, r.time, r.value, r.device_id "
        "FROM unnest(%(patients)s::text[]) AS p(patient_id) "
        "CROSS JOIN unnest(%(metrics)s::text[]) AS m(metric) "
        "CROSS JOIN LATERAL (SELECT time, value, device_id FROM readings "
        "  WHERE patient_id = p.patient_id AND metric = m.metric AND org_id = %(org)s "
        "  ORDER BY time DESC LIMIT 1) AS r "
        "ORDER BY 1, 2"
    ).format()
    return query, {"org": org, "patients": list(patients), "metrics": chosen}


def latest(
    conn: psycopg.Connection[Any], *, org: str, patients: Sequence[str], metrics: Sequence[str] | None = None
) -> list[LatestValue]:
    """The most recent value of every metric (or of ``metrics``) for each of ``patients``."""
    query, params = latest_query(org=org, patients=patients, metrics=metrics)
    return [LatestValue(r[0], r[1], r[2], float(r[3]), r[4]) for r in conn.execute(query, params)]


def readings_windows(
    conn: psycopg.Connection[Any],
    windows: Sequence[tuple[str, str, datetime, datetime]],
    metrics: Sequence[str],
    *,
    per_metric_limit: int = 2000,
) -> list[WindowReading]:
    """Readings of each ``(org, patient, start, end)`` window (``start <= time <= end``) in one round
    trip: one index range scan of ``readings_patient_metric_time`` per patient and metric."""
    if not windows:
        return []
    rows = conn.execute(
        "SELECT w.patient_id, r.time, m.metric, r.value "
        "FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS w(org_id, patient_id, t0, t1) "
        "CROSS JOIN unnest(%s::text[]) AS m(metric) "
        "CROSS JOIN LATERAL (SELECT time, value FROM readings WHERE patient_id = w.patient_id AND metric = m.metric "
        "  AND org_id = w.org_id AND time >= w.t0 AND time <= w.t1 ORDER BY time DESC LIMIT %s) AS r",
        (
            [w[0] for w in windows],
            [w[1] for w in windows],
            [w[2] for w in windows],
            [w[3] for w in windows],
            list(metrics),
            per_metric_limit,
        ),
    ).fetchall()
    return [WindowReading(r[0], r[1], r[2], float(r[3])) for r in rows]


def readings_since_time(
    conn: psycopg.Connection[Any],
    starts: Sequence[tuple[str, str, datetime]],
    metrics: Sequence[str],
    *,
    below_xid: int,
    per_metric_limit: int = 2000,
) -> list[WindowReading]:
    """Readings of each ``(org, patient, start)`` from ``start`` on (``start <= time``) that were
    stored by a transaction with id below ``below_xid`` (a feed watermark, ``store.feed``), in one
    round trip: exactly the rows a consumer that has consumed the feed up to that watermark has
    seen, whatever was committed since. Up to ``per_metric_limit`` of the newest per metric."""
    if not starts:
        return []
    rows = conn.execute(
        "SELECT w.patient_id, r.time, m.metric, r.value "
        "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS w(org_id, patient_id, t0) "
        "CROSS JOIN unnest(%s::text[]) AS m(metric) "
        "CROSS JOIN LATERAL (SELECT time, value FROM readings WHERE patient_id = w.patient_id AND metric = m.metric "
        "  AND org_id = w.org_id AND time >= w.t0 AND ingest_xid < %s::text::xid8 ORDER BY time DESC LIMIT %s) AS r",
        (
            [w[0] for w in starts],
            [w[1] for w in starts],
            [w[2] for w in starts],
            list(metrics),
            str(below_xid),
            per_metric_limit,
        ),
    ).fetchall()
    return [WindowReading(r[0], r[1], r[2], float(r[3])) for r in rows]

"""The alert engine's partitions: who owns which, and how far each has consumed the readings feed.

Patients are hashed into ``partition_count`` partitions (the hash is the caller's); a worker owns a
partition while it holds the session advisory lock ``(ADVISORY_CLASS, partition)``, and shows it is
alive with the shared lock ``(PRESENCE_CLASS, 0)`` (so a worker that owns nothing yet still counts
when the others compute their share). Locks die with the worker's connection, so a killed worker's
partitions are free at once. Watermarks are kept per (partition_count, partition) and saved in the
transaction that wrote the alerts they account for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from store.connection import Connection

__all__ = [
    "ADVISORY_CLASS",
    "PRESENCE_CLASS",
    "ensure_watermarks",
    "live_workers",
    "load_watermarks",
    "partition_locks",
    "register_worker",
    "save_watermarks",
    "try_lock_partition",
    "unlock_partition",
]

# First key of the engine's two-key advisory locks ("al" + "rt"), the second is the partition.
ADVISORY_CLASS: Final = 0x616C7274 & 0x7FFFFFFF
# Every live worker holds this key shared (second key 0): how workers count each other.
PRESENCE_CLASS: Final = ADVISORY_CLASS + 1


def try_lock_partition(conn: Connection, partition: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_CLASS, partition)).fetchone()
    return bool(row and row[0])


def unlock_partition(conn: Connection, partition: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_CLASS, partition))


def register_worker(conn: Connection) -> None:
    """Make this session visible to the other workers (until it disconnects)."""
    conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", (PRESENCE_CLASS,))


def live_workers(conn: Connection) -> set[int]:
    """Backend pids of the registered workers on this database (this one included)."""
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::bigint::oid AND objid = 0 "
        "AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (PRESENCE_CLASS,),
    ).fetchall()
    return {int(r[0]) for r in rows}


def partition_locks(conn: Connection) -> dict[int, int]:
    """Partition -> backend pid of the worker holding it (every worker, this one included)."""
    rows = conn.execute(
        "SELECT objid::text::bigint, pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::bigint::oid "
        "AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (ADVISORY_CLASS,),
    ).fetchall()
    return {int(part): int(pid) for part, pid in rows}


def ensure_watermarks(conn: Connection, partition_count: int, partitions: Iterable[int]) -> None:
    """Create the watermark rows of newly owned partitions (in their own transaction).

    A new partition starts at the lowest watermark recorded under any partition count (a changed
    partition count re-reads a little, never skips), or at 0 on a fresh database.
    """
    conn.execute(
        "INSERT INTO alert_watermarks (partition_count, partition, watermark) "
        "SELECT %s, p, coalesce((SELECT min(watermark) FROM alert_watermarks), 0) FROM unnest(%s::int[]) AS p "
        "ON CONFLICT DO NOTHING",
        (partition_count, sorted(set(partitions))),
    )


def load_watermarks(conn: Connection, partition_count: int, partitions: Iterable[int]) -> dict[int, int]:
    """The partitions' watermarks (rows made by :func:`ensure_watermarks`).

    A plain read, deliberately without ``FOR UPDATE``: row locks would give the consumer's
    transaction an id before the feed computes its horizon, and a transaction's own id holds that
    horizon back (nothing newer would ever be seen). The advisory lock on each partition already
    makes its owner the only writer of its watermark.
    """
    rows = conn.execute(
        "SELECT partition, watermark FROM alert_watermarks WHERE partition_count = %s AND partition = ANY(%s)",
        (partition_count, sorted(set(partitions))),
    ).fetchall()
    return {int(p): int(w) for p, w in rows}


def save_watermarks(conn: Connection, partition_count: int, watermarks: Mapping[int, int]) -> None:
    parts = sorted(watermarks)
    conn.execute(
        "UPDATE alert_watermarks AS w SET watermark = v.wm, updated_at = now() "
        "FROM unnest(%s::int[], %s::bigint[]) AS v(p, wm) WHERE w.partition_count = %s AND w.partition = v.p",
        (parts, [watermarks[p] for p in parts], partition_count),
    )

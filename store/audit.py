"""The audit log: append a row in the caller's transaction, seal rows into the hash chain, read
the chain back, verify it, export a patient's accounting.

Migration 0022 keeps rows (``audit_log``) and the chain over them (``audit_chain``) apart, so
that writing an audit row takes no lock: requests commit together (group commit). :func:`seal`
then appends the new rows to the chain, one sealer at a time (a transaction-scoped advisory lock),
in (xid, audit_id) order and only below its snapshot's xmin, so a late commit never lands behind
the chain's end. The chain's bytes::

    frame(text)   = 4-byte big-endian length of the UTF-8 bytes, then the bytes; NULL = ff ff ff ff
    payload(row)  = frame("2") frame(seq) frame(audit_id) frame(at as integer microseconds since
                    1970-01-01Z) frame(org_id) frame(actor_id) frame(actor_role) frame(patient_id)
                    frame(len(subjects)) frame(subject)... frame(action) frame(object_type)
                    frame(object_id) frame(outcome) frame(basis) frame(reason) frame(client_addr)
                    frame(request_id)
    hash          = sha256(prev_hash || payload); the first link's prev_hash is 32 zero bytes

A row is tamper-evident once sealed (the API seals every second); until then only the
append-only trigger protects it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from store.connection import Connection

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditRow",
    "Break",
    "ChainReport",
    "Link",
    "append",
    "chain_hash",
    "count",
    "iter_chain",
    "iter_patient",
    "payload",
    "seal",
    "unsealed",
    "verify_chain",
]

GENESIS: Final = bytes(32)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NULL: Final = b"\xff\xff\xff\xff"
_LEN: Final = struct.Struct(">i")
_MAX_BREAKS: Final = 100
# Two-key advisory lock of the sealer ("audi", "seal").
_SEAL_LOCK: Final = (0x61756469, 0x7365616C)

Outcome = Literal["success", "denied", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    at: datetime
    action: str
    object_type: str
    outcome: Outcome
    org_id: str | None = None
    actor_id: str | None = None
    actor_role: str | None = None
    patient_id: str | None = None
    subjects: tuple[str, ...] = ()
    object_id: str | None = None
    basis: str | None = None
    reason: str | None = None
    client_addr: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    audit_id: int
    at: datetime
    org_id: str | None
    actor_id: str | None
    actor_role: str | None
    patient_id: str | None
    subjects: tuple[str, ...]
    action: str
    object_type: str
    object_id: str | None
    outcome: str
    basis: str | None
    reason: str | None
    client_addr: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Link:
    """One link of the chain and the row it seals (None when that row is gone)."""

    seq: int
    audit_id: int
    prev_hash: bytes
    hash: bytes
    row: AuditRow | None


_COLUMNS: Final = (
    "l.audit_id, l.at, l.org_id, l.actor_id::text, l.actor_role, l.patient_id, l.subjects, l.action, l.object_type, "
    "l.object_id, l.outcome, l.basis, l.reason, l.client_addr, l.request_id"
)


def _row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(
        r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14]
    )  # fmt: skip


def append(conn: Connection, e: AuditEntry) -> int:
    """Insert one audit row in the caller's transaction; returns its id. Takes no lock."""
    row = conn.execute(
        "INSERT INTO audit_log (at, org_id, actor_id, actor_role, patient_id, subjects, action, object_type, "
        "object_id, outcome, basis, reason, client_addr, request_id) "
        "VALUES (%s, %s, %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING audit_id",
        (
            e.at,
            e.org_id,
            e.actor_id,
            e.actor_role,
            e.patient_id,
            list(e.subjects),
            e.action,
            e.object_type,
            None if e.object_id is None else e.object_id[:200],
            e.outcome,
            e.basis,
            None if e.reason is None else e.reason[:1000],
            None if e.client_addr is None else e.client_addr[:64],
            None if e.request_id is None else e.request_id[:64],
        ),
    ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return int(row[0])


def count(conn: Connection, *, action: str | None = None, outcome: str | None = None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM audit_log WHERE (%s::text IS NULL OR action = %s) AND (%s::text IS NULL OR outcome = %s)",
        (action, action, outcome, outcome),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _chain_end(conn: Connection) -> tuple[int, bytes, int, int] | None:
    """(seq, hash, xid, audit_id) of the last link, or None for an empty chain."""
    row = conn.execute(
        "SELECT seq, hash, xid::text::bigint, audit_id FROM audit_chain ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))


def seal(conn: Connection, *, limit: int = 5000) -> int:
    """Chain up to ``limit`` finished, unsealed rows in one transaction; returns how many (0 also
    when another sealer holds the lock)."""
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", _SEAL_LOCK).fetchone()
        if not locked or not locked[0]:
            return 0
        horizon = conn.execute("SELECT vigil_horizon()::text::bigint").fetchone()
        end = _chain_end(conn)
        rows = conn.execute(
            f"SELECT l.xid::text::bigint, {_COLUMNS} FROM audit_log l WHERE l.xid < %s::text::xid8 "  # noqa: S608
            "AND (%s::bigint IS NULL OR (l.xid, l.audit_id) > (%s::text::xid8, %s)) "
            "ORDER BY l.xid, l.audit_id LIMIT %s",
            (
                None if horizon is None else horizon[0],
                None if end is None else end[2],
                None if end is None else end[2],
                None if end is None else end[3],
                limit,
            ),
        ).fetchall()
        seq, prev = (0, GENESIS) if end is None else (end[0], end[1])
        links = []
        for r in rows:
            seq += 1
            digest = chain_hash(prev, seq, _row(r[1:]))
            links.append((seq, int(r[1]), r[0], prev, digest))
            prev = digest
        if links:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO audit_chain (seq, audit_id, xid, prev_hash, hash) "
                    "VALUES (%s, %s, %s::text::xid8, %s, %s)",
                    links,
                )
    return len(links)


def unsealed(conn: Connection) -> int:
    """Rows written after the chain's end (not yet sealed)."""
    end = _chain_end(conn)
    row = conn.execute(
        "SELECT count(*) FROM audit_log WHERE %s::bigint IS NULL OR (xid, audit_id) > (%s::text::xid8, %s)",
        (None if end is None else end[2], None if end is None else end[2], None if end is None else end[3]),
    ).fetchone()
    return 0 if row is None else int(row[0])


def iter_chain(conn: Connection, *, batch: int = 5000) -> Iterator[Link]:
    """Every link in order with its row, streamed through a server-side cursor in one snapshot."""
    with conn.transaction(), conn.cursor(name="audit_chain") as cur:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.itersize = batch
        cur.execute(
            f"SELECT c.seq, c.audit_id, c.prev_hash, c.hash, l.audit_id IS NOT NULL, {_COLUMNS} "  # noqa: S608
            "FROM audit_chain c LEFT JOIN audit_log l ON l.audit_id = c.audit_id ORDER BY c.seq"
        )
        for r in cur:
            yield Link(int(r[0]), int(r[1]), bytes(r[2]), bytes(r[3]), _row(r[5:]) if r[4] else None)


def iter_patient(
    conn: Connection, patient_id: str, start: datetime, end: datetime, *, batch: int = 5000
) -> Iterator[AuditRow]:
    """Rows about ``patient_id`` (as the subject, or among a list's subjects) in ``[start, end)``."""
    with conn.transaction(), conn.cursor(name="audit_patient") as cur:
        cur.itersize = batch
        cur.execute(
            f"SELECT {_COLUMNS} FROM audit_log l WHERE (l.patient_id = %s OR l.subjects @> ARRAY[%s]::text[]) "  # noqa: S608
            "AND l.at >= %s AND l.at < %s ORDER BY l.at, l.audit_id",
            (patient_id, patient_id, start, end),
        )
        for r in cur:
            yield _row(r)


def _frame(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode("utf-8")
    return _LEN.pack(len(raw)) + raw


def payload(seq: int, r: AuditRow) -> bytes:
    """The bytes hashed for row ``r`` at chain position ``seq``."""
    micros = (r.at - _EPOCH) // timedelta(microseconds=1)
    fields: list[str | None] = [
        "2",
        str(seq),
        str(r.audit_id),
        str(micros),
        r.org_id,
        r.actor_id,
        r.actor_role,
        r.patient_id,
        str(len(r.subjects)),
        *r.subjects,
        r.action,
        r.object_type,
        r.object_id,
        r.outcome,
        r.basis,
        r.reason,
        r.client_addr,
        r.request_id,
    ]
    return b"".join(_frame(f) for f in fields)


def chain_hash(prev_hash: bytes, seq: int, r: AuditRow) -> bytes:
    return hashlib.sha256(prev_hash + payload(seq, r)).digest()


@dataclass(frozen=True, slots=True)
class Break:
    seq: int
    kind: Literal["content_changed", "link_broken", "rows_missing", "anchor_mismatch"]
    detail: str


@dataclass(slots=True)
class ChainReport:
    rows: int = 0
    first_seq: int | None = None
    head_seq: int | None = None
    head_hash: bytes | None = None
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify_chain(links: Iterable[Link], *, anchor: tuple[int, bytes] | None = None) -> ChainReport:
    """Walk the chain: every row's hash recomputed, linked to the link before, no position missing,
    no sealed row gone.

    A chain that starts above seq 1 (older links archived) is trusted from its first prev_hash.
    ``anchor`` (seq, hash) recorded earlier outside the database must still hold: it catches a
    rewrite of the whole tail with recomputed hashes, or the deletion of the newest links.
    """
    report = ChainReport()
    prev: Link | None = None
    anchor_seen = anchor is None
    for link in links:
        report.rows += 1
        _check_link(report, prev, link)
        if link.row is None:
            _add(report, Break(link.seq, "rows_missing", f"audit row {link.audit_id} sealed here is gone"))
        elif link.row.audit_id != link.audit_id or chain_hash(link.prev_hash, link.seq, link.row) != link.hash:
            _add(report, Break(link.seq, "content_changed", f"audit row {link.audit_id} does not match its hash"))
        if anchor is not None and link.seq == anchor[0]:
            anchor_seen = True
            if link.hash != anchor[1]:
                _add(report, Break(link.seq, "anchor_mismatch", "the link's hash differs from the recorded anchor"))
        prev = link
    if prev is not None:
        report.head_seq, report.head_hash = prev.seq, prev.hash
    if not anchor_seen and anchor is not None:
        _add(report, Break(anchor[0], "anchor_mismatch", "the anchored link is no longer in the chain"))
    return report


def _check_link(report: ChainReport, prev: Link | None, link: Link) -> None:
    """The link's position and prev_hash against the link before it (or the genesis)."""
    if prev is None:
        report.first_seq = link.seq
        if link.seq == 1 and link.prev_hash != GENESIS:
            _add(report, Break(link.seq, "link_broken", "the first link does not start from the genesis hash"))
        return
    if link.seq != prev.seq + 1:
        _add(report, Break(prev.seq + 1, "rows_missing", f"links {prev.seq + 1}..{link.seq - 1} are missing"))
    if link.prev_hash != prev.hash:
        _add(report, Break(link.seq, "link_broken", f"prev_hash does not match link {prev.seq}'s hash"))


def _add(report: ChainReport, b: Break) -> None:
    if len(report.breaks) < _MAX_BREAKS:
        report.breaks.append(b)

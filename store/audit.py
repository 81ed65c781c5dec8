"""The audit log: append a row (the database chains it), read the chain back, verify it, export it.

Migration 0022 defines the table, the chain trigger and the payload; :func:`payload` is the same
byte layout computed here, so ``vigil audit verify`` recomputes every hash independently of the
database's functions::

    frame(text)   = 4-byte big-endian length of the UTF-8 bytes, then the bytes; NULL = ff ff ff ff
    payload(row)  = frame("1") frame(seq) frame(at as integer microseconds since 1970-01-01Z)
                    frame(org_id) frame(actor_id) frame(actor_role) frame(patient_id)
                    frame(len(subjects)) frame(subject)... frame(action) frame(object_type)
                    frame(object_id) frame(outcome) frame(basis) frame(reason) frame(client_addr)
                    frame(request_id)
    hash(row)     = sha256(prev_hash || payload(row)); the first row's prev_hash is 32 zero bytes

:func:`append` runs inside the caller's transaction, so the audit row commits (or not) with the
change it records. It takes the chain's advisory lock until that transaction ends: write it last.
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
    "append",
    "chain_hash",
    "count",
    "iter_chain",
    "iter_patient",
    "payload",
    "verify_chain",
]

GENESIS: Final = bytes(32)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NULL: Final = b"\xff\xff\xff\xff"
_LEN: Final = struct.Struct(">i")
_MAX_BREAKS: Final = 100

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
    seq: int
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
    prev_hash: bytes
    hash: bytes


_COLUMNS: Final = (
    "seq, at, org_id, actor_id::text, actor_role, patient_id, subjects, action, object_type, object_id, outcome, "
    "basis, reason, client_addr, request_id, prev_hash, hash"
)


def _row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(
        r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
        bytes(r[15]), bytes(r[16]),
    )  # fmt: skip


def append(conn: Connection, e: AuditEntry) -> int:
    """Insert one audit row in the caller's transaction; returns its position in the chain."""
    row = conn.execute(
        "INSERT INTO audit_log (at, org_id, actor_id, actor_role, patient_id, subjects, action, object_type, "
        "object_id, outcome, basis, reason, client_addr, request_id) "
        "VALUES (%s, %s, %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
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


def iter_chain(conn: Connection, *, batch: int = 5000) -> Iterator[AuditRow]:
    """Every row in chain order, streamed through a server-side cursor in one snapshot."""
    with (
        conn.transaction(),
        conn.cursor(name="audit_chain") as cur,
    ):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.itersize = batch
        cur.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")  # noqa: S608 - constant SQL
        for r in cur:
            yield _row(r)


def iter_patient(
    conn: Connection, patient_id: str, start: datetime, end: datetime, *, batch: int = 5000
) -> Iterator[AuditRow]:
    """Rows about ``patient_id`` (as the subject, or among a list's subjects) in ``[start, end)``."""
    with conn.transaction(), conn.cursor(name="audit_patient") as cur:
        cur.itersize = batch
        cur.execute(
            f"SELECT {_COLUMNS} FROM audit_log WHERE (patient_id = %s OR subjects @> ARRAY[%s]::text[]) "  # noqa: S608
            "AND at >= %s AND at < %s ORDER BY seq",
            (patient_id, patient_id, start, end),
        )
        for r in cur:
            yield _row(r)


def _frame(value: str | None) -> bytes:
    if value is None:
        return _NULL
    raw = value.encode("utf-8")
    return _LEN.pack(len(raw)) + raw


def payload(r: AuditRow) -> bytes:
    """The bytes migration 0022's ``audit_payload`` hashes for this row."""
    micros = (r.at - _EPOCH) // timedelta(microseconds=1)
    fields: list[str | None] = [
        "1",
        str(r.seq),
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


def chain_hash(prev_hash: bytes, r: AuditRow) -> bytes:
    return hashlib.sha256(prev_hash + payload(r)).digest()


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


def verify_chain(rows: Iterable[AuditRow], *, anchor: tuple[int, bytes] | None = None) -> ChainReport:
    """Walk the chain: every row's hash recomputed, linked to the row before, no position missing.

    A chain that starts above seq 1 (older rows archived) is trusted from its first row's
    prev_hash. ``anchor`` (seq, hash) recorded earlier outside the database must still hold: it
    catches a rewrite of the whole tail with recomputed hashes, or the deletion of the newest rows.
    """
    report = ChainReport()
    prev: AuditRow | None = None
    anchor_seen = anchor is None
    for r in rows:
        report.rows += 1
        if report.first_seq is None:
            report.first_seq = r.seq
            if r.seq == 1 and r.prev_hash != GENESIS:
                _add(report, Break(r.seq, "link_broken", "the first row does not start from the genesis hash"))
        if prev is not None:
            if r.seq != prev.seq + 1:
                _add(report, Break(prev.seq + 1, "rows_missing", f"rows {prev.seq + 1}..{r.seq - 1} are missing"))
            if r.prev_hash != prev.hash:
                _add(report, Break(r.seq, "link_broken", f"prev_hash does not match row {prev.seq}'s hash"))
        if chain_hash(r.prev_hash, r) != r.hash:
            _add(report, Break(r.seq, "content_changed", "the row's content does not match its hash"))
        if anchor is not None and r.seq == anchor[0]:
            anchor_seen = True
            if r.hash != anchor[1]:
                _add(report, Break(r.seq, "anchor_mismatch", "the row's hash differs from the recorded anchor"))
        prev = r
    if prev is not None:
        report.head_seq, report.head_hash = prev.seq, prev.hash
    if not anchor_seen and anchor is not None:
        _add(report, Break(anchor[0], "anchor_mismatch", "the anchored row is no longer in the log"))
    return report


def _add(report: ChainReport, b: Break) -> None:
    if len(report.breaks) < _MAX_BREAKS:
        report.breaks.append(b)

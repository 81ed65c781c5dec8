"""``vigil edge status`` reads the outbox without its key and without disturbing the running agent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.errors import OutboxMissing
from edge_agent.outbox.store import (
    OutboxStats,
    Quarantined,
    connect,
    gaps_of,
    quarantine_counts,
    quarantined_rows,
    stats_from,
    translating,
)
from rpm_core.status import DeviceStatus

__all__ = ["LocalState", "inspect_outbox"]


@dataclass(frozen=True, slots=True)
class LocalState:
    """What ``vigil edge status`` shows: read without the outbox key, never decrypting a reading."""

    stats: OutboxStats
    devices: tuple[DeviceStatus, ...]
    state: dict[str, Any]
    schema_version: int
    quarantined: tuple[Quarantined, ...] = ()


def inspect_outbox(path: Path) -> LocalState:
    if not path.is_file():
        raise OutboxMissing(path)
    db = connect(path, read_only=True)
    try:
        with translating():
            # One read transaction (one snapshot): the running agent appends and applies receipts
            # between these statements, and counters read before a receipt with rows read after it
            # gave a negative depth.
            db.execute("BEGIN")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            meta = dict(db.execute("SELECT key, value FROM meta"))
            first, oldest = db.execute("SELECT seq, queued_at FROM readings ORDER BY seq LIMIT 1").fetchone() or (
                None,
                None,
            )
            gaps = gaps_of(db)
            holes, total = quarantine_counts(db, first)
            quarantined = quarantined_rows(db)
            docs = [doc for (doc,) in db.execute("SELECT doc FROM devices ORDER BY device_id")]
            db.execute("COMMIT")
    finally:
        db.close()
    return LocalState(
        stats=stats_from(meta, first, oldest, gaps, holes=holes, quarantined=total),
        devices=tuple(DeviceStatus.from_json(d) for d in docs),
        state={k.removeprefix("state."): json.loads(v) for k, v in meta.items() if k.startswith("state.")},
        schema_version=version,
        quarantined=quarantined,
    )

"""Fixtures for the alert tests that need PostgreSQL: an organisation, patients, readings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import count

import psycopg
import pytest
from psycopg.types.json import Jsonb

from store.readings import ReadingRow, insert_readings

_SEQ = count(1)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        yield c


def add_patients(conn: psycopg.Connection, ids: Sequence[str], settings: dict | None = None) -> None:
    with conn.transaction():
        for pid in ids:
            conn.execute(
                "INSERT INTO patients (patient_id, org_id, display_name, settings) VALUES (%s, 'o1', %s, %s)",
                (pid, "Patient", Jsonb(settings or {})),
            )


def store_readings(conn: psycopg.Connection, rows: Sequence[tuple[str, datetime, str, float]]) -> None:
    """Store readings the way ingest does: one committed transaction (through store.insert_readings)."""
    with conn.transaction():
        insert_readings(
            conn,
            [
                ReadingRow(t, "o1", pid, "agent-1", "dev-1", metric, value, next(_SEQ), [], None)
                for pid, t, metric, value in rows
            ],
        )

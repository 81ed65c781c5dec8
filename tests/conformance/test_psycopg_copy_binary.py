"""Canary: psycopg's binary COPY with declared types, as the readings insert relies on it (store's
``insert_readings``: ``COPY ... FROM STDIN (FORMAT BINARY)`` after ``copy.set_types([...])``).

What an upgrade of psycopg could change under us:

- ``set_types`` accepts these type names, and values are converted to the declared type, not to
  the type their Python class suggests (an ``int`` reading value goes into a ``float8`` column);
- the dumper COPY uses for a declared type is looked up by that type's oid among the registered
  binary dumpers: store registers its own memoised ``text[]`` dumper under a private key class,
  and lists still go through it;
- psycopg's binary ``text[]`` is PostgreSQL's array send format, the bytes store's dumper writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.adapt import Dumper
from psycopg.pq import Format

# The column types of the readings COPY, in its order (store keeps its own copy of this list).
COPY_TYPES = ["timestamptz", "text", "text", "text", "text", "text", "float8", "int8", "text[]", "text"]
TEXT_ARRAY_OID = 1009
T0 = datetime(2026, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db) as c:
        c.execute(
            "CREATE TEMP TABLE canary (t timestamptz, a text, b text, c text, d text, e text, "
            "v float8, n int8, flags text[], extra text)"
        )
        yield c


def copy_rows(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        with cur.copy("COPY canary FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        return cur.execute("SELECT * FROM canary ORDER BY n").fetchall()


def test_declared_types_convert_the_values(conn: psycopg.Connection[Any]) -> None:
    rows = [
        (T0, "o1", "p1", "agt-1", "E0:00:00:00:00:01", "heart_rate", 72, 1, ["site:finger", "clock_skew"], None),
        (T0, "o1", "p1", "agt-1", "dev", "spo2", 97.5, 2**62, [], "2026-01-01T12:30:15"),
        (T0, "ö", "", "x", "y", "z", -0.0, -1, ["", "é", "a,b"], ""),
    ]
    got = copy_rows(conn, rows)
    assert got == [rows[2], rows[0], rows[1]]
    assert type(got[1][6]) is float  # the int 72 went in as float8


class _Key(tuple[str, ...]):
    """A registration key only, as store's: lists are dumped by whatever is registered for the oid."""


class CountingTextArrayDumper(Dumper):
    format = Format.BINARY
    oid = TEXT_ARRAY_OID
    calls = 0

    def dump(self, obj: Any) -> bytes:
        CountingTextArrayDumper.calls += 1
        builtin = self.connection.adapters.get_dumper_by_oid(TEXT_ARRAY_OID, Format.BINARY)  # type: ignore[union-attr]
        return bytes(builtin(list, self.connection).dump(list(obj)))  # type: ignore[arg-type]


def test_a_dumper_registered_for_the_oid_is_the_one_copy_uses(conn: psycopg.Connection[Any]) -> None:
    CountingTextArrayDumper.calls = 0
    builtin = conn.adapters.get_dumper_by_oid(TEXT_ARRAY_OID, Format.BINARY)
    rows = [(T0, "o", "p", "a", "d", "m", 1.0, n, ["f", str(n)], None) for n in range(3)]
    with conn.cursor() as cur:
        cur.adapters.register_dumper(_Key, CountingTextArrayDumper)
        assert cur.adapters.get_dumper_by_oid(TEXT_ARRAY_OID, Format.BINARY) is CountingTextArrayDumper
        with cur.copy("COPY canary FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    assert CountingTextArrayDumper.calls == len(rows)
    assert conn.adapters.get_dumper_by_oid(TEXT_ARRAY_OID, Format.BINARY) is builtin  # the cursor's own map
    assert [r[8] for r in conn.execute("SELECT * FROM canary ORDER BY n").fetchall()] == [r[8] for r in rows]


@pytest.mark.parametrize("items", [[], ["a"], ["a", None, "é", ""], ["x" * 300]])
def test_binary_text_array_is_postgresql_array_send(conn: psycopg.Connection[Any], items: list[str | None]) -> None:
    dumper = conn.adapters.get_dumper_by_oid(TEXT_ARRAY_OID, Format.BINARY)(list, conn)
    ours = bytes(dumper.dump(items))  # type: ignore[arg-type]
    (theirs,) = conn.execute("SELECT array_send(%s::text[])", (items,)).fetchone()  # type: ignore[misc]
    assert ours == bytes(theirs)

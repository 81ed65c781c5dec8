"""Error translation at the store boundary: a database-side failure is never the data's fault
(issue 10 item 6). Each SQLSTATE class maps to its store error; one of them against the real server."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg.conninfo import make_conninfo

from ingest.database import BatchWrite, IngestDatabase
from store.connection import translate_error, translate_errors
from store.dead_letters import DeadLetterRow
from store.errors import DatabaseUnavailable, MigrationError, StoreError, TransientConflict

UNAVAILABLE = [
    "08000",  # connection exception
    "08006",  # connection failure
    "25006",  # read-only SQL transaction: a standby, default_transaction_read_only
    "25P02",  # in failed SQL transaction
    "28P01",  # invalid password: credentials changed under us
    "3D000",  # the database does not exist (any more)
    "42501",  # insufficient privilege: rights revoked
    "53100",  # disk full
    "53200",  # out of memory
    "53300",  # too many connections
    "53400",  # configuration limit exceeded
    "57014",  # query cancelled (an operator, statement_timeout)
    "57P01",  # admin shutdown
    "57P02",  # crash shutdown
    "57P03",  # cannot connect now (starting up, recovering)
    "58030",  # I/O error
    "XX000",  # internal error
    "XX001",  # data corrupted
    "55006",  # object in use: another operational condition
]
TRANSIENT = ["40001", "40P01", "55P03"]
THE_DATA = ["22001", "22021", "22P02", "23502", "23503", "23505", "23514", "54000", "42804"]


@pytest.mark.parametrize("sqlstate", UNAVAILABLE)
def test_database_side_states_are_database_unavailable(sqlstate: str) -> None:
    got = translate_error(pgerrors.lookup(sqlstate)("server says no"))
    assert isinstance(got, DatabaseUnavailable)
    assert got.sqlstate == sqlstate


@pytest.mark.parametrize("sqlstate", TRANSIENT)
def test_conflicts_are_transient(sqlstate: str) -> None:
    got = translate_error(pgerrors.lookup(sqlstate)("conflict"))
    assert isinstance(got, TransientConflict)
    assert got.sqlstate == sqlstate


@pytest.mark.parametrize("sqlstate", THE_DATA)
def test_what_the_data_may_cause_is_left_to_the_caller(sqlstate: str) -> None:
    assert translate_error(pgerrors.lookup(sqlstate)("bad value")) is None


def test_a_lost_connection_without_sqlstate_is_unavailable_and_a_client_error_is_not() -> None:
    lost = translate_error(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert isinstance(lost, DatabaseUnavailable)
    assert lost.sqlstate is None
    assert isinstance(translate_error(psycopg.InterfaceError("connection already closed")), DatabaseUnavailable)
    assert translate_error(psycopg.ProgrammingError("cannot adapt type")) is None


def test_a_missing_table_is_a_migration_error() -> None:
    assert isinstance(translate_error(pgerrors.lookup("42P01")("no table")), MigrationError)


def test_translate_errors_reports_conflicts_as_unavailable_to_reconnecting_consumers() -> None:
    # The alert engine knows one retry: reconnect after a pause. A deadlock gets that retry.
    with pytest.raises(DatabaseUnavailable) as info, translate_errors():
        raise pgerrors.lookup("40P01")("deadlock detected")
    assert info.value.sqlstate == "40P01"
    with pytest.raises(pgerrors.UniqueViolation), translate_errors():
        raise pgerrors.lookup("23505")("duplicate")


def test_a_read_only_database_is_unavailable_to_ingest_not_a_bad_batch(db: str) -> None:
    # What a standby, or a database set read-only by an operator, answers to every write: at
    # connect (the session's staging table) ...
    with pytest.raises(DatabaseUnavailable) as at_connect:
        IngestDatabase.connect(make_conninfo(db, options="-c default_transaction_read_only=on"))
    assert at_connect.value.sqlstate == "25006"
    # ... and to a batch of a session that was writable when it connected.
    session = IngestDatabase.connect(db)
    row = DeadLetterRow("vigil/v1/o1/a1/up/readings", "malformed", "", b"x", None, None)
    try:
        session._conn.execute("SET default_transaction_read_only = on")
        with pytest.raises(DatabaseUnavailable) as at_commit:
            session.commit(BatchWrite(dead_letters=[row]), now=datetime.now(UTC))
        assert at_commit.value.sqlstate == "25006"
    finally:
        session.close()
    writable = IngestDatabase.connect(db)
    try:
        nul = DeadLetterRow("t\x00", "r", "", b"", None, None)
        with pytest.raises(StoreError) as refused:  # a NUL byte in text: the data's fault, not the database's
            writable.commit(BatchWrite(dead_letters=[nul]), now=datetime.now(UTC))
        assert not isinstance(refused.value, DatabaseUnavailable | TransientConflict)
    finally:
        writable.close()


# Every session is in UTC whatever the server's or the URL's time zone: a day bucket is a UTC day.
# (The URL's own ``options`` stand for a server configured in another zone, and are kept otherwise.)
NEW_YORK = "-c TimeZone=America/New_York -c statement_timeout=4321"


def _session_facts(conn: psycopg.Connection[object]) -> tuple[str, str, datetime]:
    row = conn.execute(
        "SELECT current_setting('TimeZone'), current_setting('statement_timeout'), "
        "date_trunc('day', timestamptz '2026-03-15 03:30:00+00')"
    ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), row[2]


def test_every_session_is_in_utc_and_keeps_the_urls_own_options(db: str) -> None:
    from store.app_pool import PoolOptions, open_app_pool
    from store.connection import connect
    from store.transaction import transaction

    url = make_conninfo(db, options=NEW_YORK)
    midnight = datetime(2026, 3, 15, tzinfo=UTC)
    with connect(url) as conn:
        zone, timeout, day = _session_facts(conn)
        assert (zone, timeout, day) == ("UTC", "4321ms", midnight)
        assert day.tzinfo is UTC  # psycopg's fast path for a UTC session
    with transaction(url) as tx:
        assert _session_facts(tx.conn) == ("UTC", "4321ms", midnight)
    pool = open_app_pool(PoolOptions(url=url, min_size=1, max_size=1, role=None))
    try:
        with pool.connection() as conn:
            assert _session_facts(conn) == ("UTC", "4321ms", midnight)
    finally:
        pool.close()
    with psycopg.connect(url) as plain:  # without Vigil's options, the URL's zone would apply
        assert _session_facts(plain)[0] == "America/New_York"

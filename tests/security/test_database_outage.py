"""Issue 10 item 6: a read-only database is the database's failure, never the message's.

The database of a real ``vigil ingest`` process is made read-only (``default_transaction_read_only``
and its sessions terminated: what a failover to a standby, a full disk handled by an operator or
``ALTER DATABASE`` look like to a client: SQLSTATE 25006 on every write). Readings published
meanwhile must not be dead-lettered (they used to be split down to one message and stored as
``store_error`` once the database was back); ingest holds them unacknowledged, raises the alarm on
its Prometheus endpoint, logs one error for the outage, retries, and stores every reading exactly
once when the database is writable again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from store.migrate import migrate
from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import readings
from tests.support.ingest_attack import IngestRig, dead_letters, metric, open_rig, scrape
from tests.support.pg import admin_url, temporary_database
from vigil_testkit.net import free_port

LAG = "vigil_ingest_consumer_lag_messages"
OLDEST = "vigil_ingest_consumer_lag_seconds"
DB_UP = "vigil_ingest_database_up"


@pytest.fixture
def private_db() -> Iterator[str]:
    """A database of this test alone: it is made read-only."""
    with temporary_database("vigil_outage") as url:
        migrate(url, flavor="postgres")
        yield url


@pytest.fixture
def rig(private_db: str, tmp_path: Path) -> Iterator[IngestRig]:
    with open_rig(private_db, tmp_path) as r:
        yield r


def set_read_only(url: str, on: bool) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        setting = sql.SQL("SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only")
        conn.execute(sql.SQL("ALTER DATABASE {} ").format(sql.Identifier(str(name))) + setting)
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'vigil-ingest'",
            (name,),
        )


def db_errors(samples: dict) -> float:
    """Failed batch attempts, whatever the reason."""
    return sum(v for (name, _labels), v in samples.items() if name == "vigil_ingest_database_errors_total")


def test_read_only_database_holds_messages_raises_the_alarm_and_stores_everything_after(
    private_db: str, rig: IngestRig
) -> None:
    port = free_port()
    worker = rig.process(metrics_port=port, batch_max_messages=4)
    worker.start()
    a = rig.agent("agt-outage")
    a.send(readings("agt-outage", 1, 10))
    a.wait_receipt(10)

    set_read_only(private_db, True)
    try:
        for first in range(11, 61, 5):  # ten envelopes, acknowledged by the broker
            a.send(readings("agt-outage", first, 5))
        # The alarm: ingest retried several times, holds all ten unacknowledged, says the database is down.
        seen: list[dict] = [{}]

        def alarmed() -> bool:
            seen[0] = scrape(port)
            return db_errors(seen[0]) >= 3 and metric(seen[0], LAG) == 10

        try:
            wait_until(alarmed, 30, "the alarm")
        except AssertionError:
            raise AssertionError(
                f"no alarm: database errors {db_errors(seen[0])}, lag {metric(seen[0], LAG)}, "
                f"up {metric(seen[0], DB_UP)}, oldest {metric(seen[0], OLDEST)}"
            ) from None
        samples = seen[0]
        assert metric(samples, DB_UP) == 0
        assert metric(samples, OLDEST) > 0
        assert dead_letters(private_db) == []
        assert max(a.receipts) == 10  # nothing confirmed to the agent meanwhile
        assert worker.log().count("DATABASE UNAVAILABLE") == 1, worker.log()[-3000:]  # once per outage
    finally:
        set_read_only(private_db, False)

    a.wait_receipt(60, timeout=60)
    assert dead_letters(private_db) == []
    n, distinct = (
        scalar(private_db, "SELECT count(*) FROM readings WHERE agent_id = 'agt-outage'"),
        scalar(private_db, "SELECT count(DISTINCT seq) FROM readings WHERE agent_id = 'agt-outage'"),
    )
    assert (n, distinct) == (60, 60)
    after = wait_until(lambda: (s := scrape(port)) and metric(s, DB_UP) == 1 and metric(s, LAG) == 0 and s, 10, "up")
    assert metric(after, OLDEST) == 0
    assert worker.log().count("database available again") == 1
    assert worker.terminate() == 0

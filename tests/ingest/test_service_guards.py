"""Nothing that goes wrong with one batch or one message stops the ingest worker (issue 10 item 1).

Real Mosquitto, real PostgreSQL, the service in process; the faults are injected at its seams (the
database session it is given, the keyring it signs receipts with), never inside the code under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from ingest.database import BatchResult, BatchWrite, IngestDatabase
from ingest.service import IngestService
from ingest.settings import IngestSettings
from rpm_core.keys import ServerKey
from rpm_core.keystore import ServerKeyring, load_server_keys
from store.agents import AgentRecord
from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import readings
from vigil_testkit.broker import SecureBroker


class BuggyStore:
    """The real database session, except that writing a reading with sequence 13 fails with a
    plain Python error (what a bug in a dumper would raise): not a StoreError, not the database."""

    def __init__(self, url: str, *, refuse_dead_letters: bool = False) -> None:
        self._db = IngestDatabase.connect(url)
        self._refuse_dead_letters = refuse_dead_letters

    def synchronous_commit(self) -> str:
        return self._db.synchronous_commit()

    def load_agents(self, agent_ids: Iterable[str]) -> dict[str, AgentRecord]:
        return self._db.load_agents(agent_ids)

    def commit(self, batch: BatchWrite, *, now: datetime) -> BatchResult:
        if any(r.seq == 13 for r in batch.readings):
            raise KeyError("a bug")
        if self._refuse_dead_letters and any(d.topic for d in batch.dead_letters):
            raise ValueError("a bug in writing dead letters too")
        return self._db.commit(batch, now=now)

    def prune_dead_letters(self, *, before: datetime) -> int:
        return self._db.prune_dead_letters(before=before)

    def close(self) -> None:
        self._db.close()


class ReceiptsFail(ServerKeyring):
    """A keyring that opens envelopes but cannot sign receipts (say, an HSM that went away)."""

    @property
    def current(self) -> ServerKey:
        raise OSError("signing device unavailable")


@pytest.fixture
def service(ingest_settings: Callable[..., IngestSettings], key_dir, broker: SecureBroker) -> Iterator[Any]:
    made: list[IngestService] = []

    def make(**kw: Any) -> IngestService:
        settings = ingest_settings(batch_max_wait_ms=200)
        kw.setdefault("keyring", load_server_keys(key_dir))
        svc = IngestService(settings, mqtt_password=broker.ingest_password, **kw)
        svc.start()
        made.append(svc)
        wait_until(lambda: svc.connected, 10, "ingest connected")
        return svc

    yield make
    for svc in made:
        svc.stop(timeout=5)


def test_a_batch_failing_with_a_non_database_error_is_split_to_the_one_message(db: str, service, agents) -> None:
    svc = service(connect_db=lambda: BuggyStore(db))
    a = agents("agt-a")
    for first in (1, 11, 21):  # the second envelope holds seq 13
        a.send(readings("agt-a", first, 10), wait=False)
    a.send(readings("agt-a", 31, 10))
    wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 30, 30, "the other envelopes stored")
    wait_until(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1, 10, "the one message dead-lettered")
    assert scalar(db, "SELECT min(seq) FROM readings WHERE seq BETWEEN 11 AND 20") is None
    assert scalar(db, "SELECT reason || ' ' || agent_id FROM dead_letters") == "internal_error agt-a"
    assert scalar(db, "SELECT detail FROM dead_letters").startswith("KeyError at ingest/test_service_guards.py:")
    assert svc.failure is None
    assert svc.metrics.registry.get_sample_value("vigil_ingest_internal_errors_total", {"stage": "batch"}) >= 1
    a.wait_receipt(10)  # 11-20 stay unconfirmed: the agent keeps them and sends them again
    assert max(a.receipts) == 10


def test_receipts_that_cannot_be_signed_do_not_stop_the_worker(db: str, service, agents, key_dir) -> None:
    svc = service(keyring=ReceiptsFail(load_server_keys(key_dir).generations))
    a = agents("agt-a", register=False)
    a.register()
    wait_until(lambda: scalar(db, "SELECT status FROM agents WHERE agent_id = 'agt-a'") == "active", 20, "active")
    a.send(readings("agt-a", 1, 5))
    wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 5, 20, "first batch stored")
    a.send(readings("agt-a", 6, 5))  # a later batch is still handled: the worker lives
    wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 10, 20, "second batch stored")
    assert svc.failure is None
    assert svc.metrics.registry.get_sample_value("vigil_ingest_internal_errors_total", {"stage": "receipt"}) >= 2
    assert a.receipts == []


def test_a_dead_letter_that_cannot_be_written_is_kept_as_its_length_and_hash(db: str, service, agents) -> None:
    svc = service(connect_db=lambda: BuggyStore(db, refuse_dead_letters=True))
    a = agents("agt-a")
    poison = a.send(readings("agt-a", 11, 10))
    wait_until(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == 1, 30, "the minimal dead letter")
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT topic, reason, octet_length(payload), payload_bytes, payload_sha256 FROM dead_letters"
        ).fetchone()
    assert row == ("", "internal_error", 0, len(poison), hashlib.sha256(poison).digest())
    a.send(readings("agt-a", 21, 10))
    wait_until(lambda: scalar(db, "SELECT count(*) FROM readings") == 10, 20, "a later envelope stored")
    assert svc.failure is None
    assert svc.metrics.registry.get_sample_value("vigil_ingest_internal_errors_total", {"stage": "dead_letter"}) >= 1

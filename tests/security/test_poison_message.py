"""Issue 10 item 1: one hostile envelope must never kill an ingest worker.

An enrolled agent publishes, with its own credentials, an envelope whose protected header carries
an integer of 5,000 digits as the envelope version: building the error message used to raise
(Python refuses ``repr()`` of such an integer), the worker thread died without acknowledging, and
the broker redelivered the message to every restarted worker. Real Mosquitto, real ``vigil
ingest`` process, real PostgreSQL.
"""

from __future__ import annotations

import cbor2

from tests.ingest.conftest import scalar
from tests.support.agents import readings
from tests.support.ingest_attack import (
    IngestRig,
    dead_letters,
    ingest_rig_fixture,  # noqa: F401 - the ingest_rig fixture
)

HUGE = 10**5000


def poisoned(data: bytes) -> bytes:
    """``data`` (a sealed envelope) with a 5,000-digit integer as the version in its protected header."""
    msg = cbor2.loads(data)
    msg.value[0] = cbor2.dumps({1: 24, -65537: HUGE})
    return cbor2.dumps(msg)


def test_huge_integer_header_is_a_dead_letter_and_the_worker_lives_on(db: str, ingest_rig: IngestRig) -> None:
    worker = ingest_rig.process()  # as documented: `vigil ingest` with its defaults
    worker.start()
    a = ingest_rig.agent("agt-poison")  # registered: its readings are opened with its keys
    topic, valid = a.sealed(readings("agt-poison", 1, 5))
    a.publish_raw(topic, poisoned(valid))
    a.publish_raw(topic, valid)
    a.wait_receipt(5, timeout=60)  # the valid envelope after the poison one was stored

    assert scalar(db, "SELECT count(*) FROM readings WHERE agent_id = 'agt-poison'") == 5
    [(reason, agent, detail)] = dead_letters(db)
    assert (reason, agent) == ("unsupported_version", "agt-poison")
    assert detail == "unsupported envelope version an integer of 16610 bits"  # bounded: never the value itself
    assert worker.proc is not None
    assert worker.proc.poll() is None, worker.log()[-3000:]
    assert "Traceback" not in worker.log()

    # The poison message was acknowledged: a restarted worker (same persistent session) does not
    # see it again. A later message processed is the positive signal that the queue was drained.
    assert worker.terminate() == 0
    worker.start()
    worker.wait_connected(2)
    a.send(readings("agt-poison", 6, 5))
    a.wait_receipt(10, timeout=60)
    assert len(dead_letters(db)) == 1
    assert scalar(db, "SELECT count(*) FROM readings WHERE agent_id = 'agt-poison'") == 10
    assert worker.proc.poll() is None

"""Issue 10 item 7: an enrolled agent cannot fill the database disk with dead letters.

The agent floods large garbage under its own ``up/`` subtree (the kinds ingest knows and kinds it
does not) with its own credentials. A real ``vigil ingest`` process must store a bounded prefix of
at most the first few payloads (their full length and SHA-256 kept), count the rest per agent in a
summary row and a metric labelled with the agent, keep storing another agent's readings, and
delete dead letters older than the retention without anyone running a command.
"""

from __future__ import annotations

import hashlib
import os
import time

import psycopg

from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import readings
from tests.support.ingest_attack import (
    IngestRig,
    ingest_rig_fixture,  # noqa: F401 - the ingest_rig fixture
    metric,
    scrape,
)
from vigil_testkit.net import free_port

CAP = 1024  # dead_letter_payload_max_bytes for this test
BURST = 5  # dead_letter_burst
PER_MINUTE = 6.0  # dead_letter_per_minute
FLOOD = 120
SIZE = 200_000


def test_flood_of_garbage_is_bounded_counted_and_expires(db: str, ingest_rig: IngestRig) -> None:
    port = free_port()
    settings = {
        "metrics_port": port,
        "dead_letter_payload_max_bytes": CAP,
        "dead_letter_burst": BURST,
        "dead_letter_per_minute": PER_MINUTE,
    }
    worker = ingest_rig.process(**settings)
    worker.start()
    attacker, victim = ingest_rig.agent("agt-flood"), ingest_rig.agent("agt-victim")
    base = f"vigil/v1/{attacker.org}/{attacker.agent}/up"
    topics = [f"{base}/readings", f"{base}/status", f"{base}/junk", f"{base}/x/y/z"]

    started = time.monotonic()
    accepted: list[bytes] = []
    for i in range(FLOOD):
        garbage = os.urandom(SIZE)
        if attacker.publish_raw(topics[i % len(topics)], garbage) < 0x80:  # the broker took it
            accepted.append(garbage)
        if i == FLOOD // 2:
            victim.send(readings("agt-victim", 1, 10), wait=False)  # in the middle of the flood
    victim.send(readings("agt-victim", 11, 10))  # after the flood: its receipt means all was handled
    victim.wait_receipt(20, timeout=120)
    elapsed_min = (time.monotonic() - started) / 60
    assert len(accepted) >= FLOOD // 2  # at least the known kinds reached ingest

    # Every garbage message is accounted for: stored (bounded) or counted in the summary.
    with psycopg.connect(db) as conn:
        stored, stored_bytes = conn.execute(
            "SELECT count(*), coalesce(sum(octet_length(payload)), 0) FROM dead_letters WHERE agent_id = 'agt-flood'"
        ).fetchone()
    allowed = BURST + int(PER_MINUTE * elapsed_min) + 1
    assert stored <= allowed, (stored, allowed)
    assert stored_bytes <= stored * CAP
    suppressed = scalar(
        db, "SELECT coalesce(sum(messages), 0) FROM dead_letter_suppressed WHERE agent_id = 'agt-flood'"
    )
    assert stored + suppressed == len(accepted)
    assert scalar(db, "SELECT count(*) FROM dead_letter_suppressed") <= 2  # one row per agent and hour
    with psycopg.connect(db) as conn:
        for length, digest in conn.execute(
            "SELECT payload_bytes, payload_sha256 FROM dead_letters WHERE agent_id = 'agt-flood'"
        ):
            assert length == SIZE
            assert bytes(digest) in {hashlib.sha256(g).digest() for g in accepted}  # an operator can match it

    samples = wait_until(lambda: scrape(port), 10, "metrics")
    assert metric(samples, "vigil_ingest_dead_letters_suppressed_total", agent="agt-flood") == suppressed
    assert "DEAD LETTER FLOOD" in worker.log()
    assert worker.log().count("DEAD LETTER FLOOD") <= 2  # once per agent and alarm window, not per message

    # The victim's readings were stored while the flood went on.
    assert scalar(db, "SELECT count(DISTINCT seq) FROM readings WHERE agent_id = 'agt-victim'") == 20

    # Retention (default 30 days): rows older than that are deleted by ingest itself, at start and
    # then periodically. Backdate some rows, restart the worker, and the old ones go.
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE dead_letters SET received_at = now() - interval '31 days' "
            "WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT 2)"
        )
        conn.execute("UPDATE dead_letter_suppressed SET hour = hour - interval '31 days'")
    assert worker.terminate() == 0
    worker.start()
    wait_until(lambda: scalar(db, "SELECT count(*) FROM dead_letters") == stored - 2, 60, "old dead letters pruned")
    wait_until(lambda: scalar(db, "SELECT count(*) FROM dead_letter_suppressed") == 0, 10, "old summaries pruned")
    assert worker.proc is not None
    assert worker.proc.poll() is None

"""Reliability catalogue 7: kill -9 the agent while readings stream, many times at random moments.

The agent runs as its own process (the ``vigil edge`` app: ``run --config ...``) with the built-in
demo devices in it at 20x speed (a heart-rate strap and an oximeter notifying every 50 ms, a cuff,
a scale, a thermometer, and a glucose meter holding 150 stored records that it reports through
RACP at 50 records/s), so every kill lands among real outbox writes: readings, RACP cursors, receipts
deleting rows. Each run is killed a random 0-0.6 s after its first commit; the glucose meter starts
over with all 150 records every time, as a real meter keeps its memory.

After every kill the outbox passes ``PRAGMA integrity_check`` and holds every sequence number the
dead process had reported committed (its debug log line is written after the commit returns).
At the end, one clean run catches up through the project's TLS broker to the receipting
server stand-in, and: sequence numbers form 1..N with no number ever carrying two readings; every
reading the outbox ever accepted was delivered or is still in it; each glucose record arrived exactly once.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.emulation.demo import DEMO_DEVICES
from edge_agent.outbox import inspect_outbox
from rpm_core.keys import ServerKey
from vigil_testkit import procs
from vigil_testkit.agent_harness import Enrolled, ReceiptServer, enroll_agent, wait_sync
from vigil_testkit.broker import SecureBroker

KILLS = int(os.environ.get("VIGIL_TEST_KILLS", "50"))
RECORDS = 150  # 3 s of RACP transfer: the first few kills land inside it
COMMITTED = re.compile(r"committed seq (\d+)-(\d+)")
AGENT_COMMAND = [sys.executable, "-X", "faulthandler", "-c", "from edge_agent.cli import app; app()", "run"]


def committed_seqs(log: Path) -> set[int]:
    seqs: set[int] = set()
    for first, last in COMMITTED.findall(log.read_text(errors="replace")):
        seqs.update(range(int(first), int(last) + 1))
    return seqs


def glucose_cursor(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT value FROM cursors WHERE kind = 'glucose'").fetchone()
    finally:
        db.close()
    return 0 if row is None else int(row[0])


def check_outbox(path: Path) -> tuple[int, set[int]]:
    """integrity_check, then (last allocated sequence number, the sequence numbers held)."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        held = {s for (s,) in db.execute("SELECT seq FROM readings")}
    finally:
        db.close()
    return int(next_seq) - 1, held


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return procs.popen([*AGENT_COMMAND, "--config", str(config)], stdout=out, stderr=out)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_while_streaming(tmp_path: Path, broker: SecureBroker) -> None:
    server = ServerKey.generate()
    enrolled: Enrolled = enroll_agent(
        tmp_path, broker, server, devices=DEMO_DEVICES, ble_backend="emulated", demo_speed=20.0,
        demo_glucose_records=RECORDS, log_level="debug", batch_max_age_s=0.2, mqtt_backoff_cap_s=1.0,
        outbox_max_readings=1_000_000,
    )  # fmt: skip
    outbox = enrolled.state_dir / "outbox.db"
    token = enrolled.bundle.enrollment_token.get_secret_value()
    receipts = ReceiptServer(broker, server, {enrolled.bundle.agent_id: token}).start()
    rng = random.Random(int(os.environ.get("VIGIL_TEST_SEED", "7")))
    accepted: set[int] = set()
    last_allocated = 0
    cut_transfers = 0  # kills that landed while the meter was still reporting its records
    try:
        for run in range(KILLS):
            log = tmp_path / f"run-{run}.log"
            agent = start_agent(enrolled.config, log)
            try:
                wait_sync(lambda log=log: COMMITTED.search(log.read_text(errors="replace")), 30, f"run {run}: commit")
                time.sleep(rng.uniform(0.0, 0.6))
            finally:
                agent.send_signal(signal.SIGKILL)
                agent.wait()
            said = committed_seqs(log)
            allocated, held = check_outbox(outbox)
            assert said, f"run {run} committed nothing"
            assert allocated >= max(said), f"run {run}: a reported commit did not survive"
            assert allocated >= last_allocated, "sequence numbers went backwards"
            assert min(said) > last_allocated, "a sequence number was handed out twice"
            accepted |= said
            last_allocated = allocated
            cut_transfers += 0 < glucose_cursor(outbox) < RECORDS

        # One clean run drains everything.
        log = tmp_path / "final.log"
        agent = start_agent(enrolled.config, log)
        try:

            def caught_up() -> bool:  # everything of the killed runs receipted, all records fetched
                glucose = [r for r in receipts.readings(enrolled.bundle.agent_id) if r.metric == "glucose"]
                return len(glucose) >= RECORDS and inspect_outbox(outbox).stats.last_receipt >= last_allocated

            # Its SIGTERM handler is in place once it says it runs: a signal before that (the backlog
            # may already be drained) would kill it by the default action, which is not a clean stop.
            wait_sync(lambda: "running with" in log.read_text(), 60, "the final agent to start")
            wait_sync(caught_up, 90, "the backlog to drain")
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                code = agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.send_signal(signal.SIGABRT)  # faulthandler: where it hangs
                agent.wait()
                code = None
            assert code == 0, log.read_text()[-6000:]
        accepted |= committed_seqs(log)
    finally:
        receipts.stop()

    assert cut_transfers >= 2 or KILLS < 10
    record = receipts.record(enrolled.bundle.agent_id)
    assert record is not None
    assert record.reused == []  # no sequence number ever carried two different readings
    delivered = set(record.readings)
    final_allocated, held = check_outbox(outbox)
    # Every reading the outbox accepted was delivered or is still in it; numbers 1..N, none skipped.
    assert accepted <= delivered | held
    assert delivered | held == set(range(1, final_allocated + 1))
    assert set(range(1, last_allocated + 1)) <= delivered  # the killed runs' readings all arrived
    glucose = sorted(r.value for r in record.readings.values() if r.metric == "glucose")
    assert glucose == [float(80 + n) for n in range(1, RECORDS + 1)]  # each stored record exactly once

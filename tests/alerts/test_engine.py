"""``vigil alerts run`` as a process: readings committed one transaction at a time (as ingest
commits them) become alerts; kill -9 mid-stream and restart, twice: no alert lost, none duplicated,
and the result equals the replay of the same readings.

The readings source is ``store.insert_readings`` (the insert ingest uses) in separate transactions;
switch it to the real ingest service once that lands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from alerts.config import RulesConfig
from alerts.partitions import partition_of
from alerts.replay import Replayer
from alerts.replay_csv import ReplayReading
from tests.alerts.conftest import add_patients, store_readings
from vigil_testkit import procs

PATIENTS = 240
PARTITIONS = 4


def readings_of(i: int, base: datetime) -> list[tuple[str, datetime, str, float]]:
    pid = f"k{i:03d}"
    t = [base + timedelta(minutes=m) for m in (0, 10, 20)]
    rows = [(pid, t[0], "spo2", 97.0), (pid, t[1], "spo2", 91.0), (pid, t[2], "spo2", 90.0)]
    rows += [(pid, ti, "heart_rate", 72.0 + k) for k, ti in enumerate(t)]
    if i % 3 == 0:
        rows.append((pid, t[2], "glucose", 45.0))  # a second, critical alert for every third patient
    return rows


def sentinel_patients(partitions: int) -> list[str]:
    """One patient id per partition (ids the stream does not use)."""
    chosen: dict[int, str] = {}
    for i in range(1000):
        chosen.setdefault(partition_of(f"sentinel-{i}", partitions), f"sentinel-{i}")
        if len(chosen) == partitions:
            return sorted(chosen.values())
    raise AssertionError("no id for some partition")


def sentinel_actions(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM alert_actions JOIN alerts USING (alert_id) WHERE alerts.patient_id LIKE 'sentinel-%%'"
    ).fetchone()[0]


def start_engine(db: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "vigil_cli", "alerts", "run", "--database-url", db, "--partitions", str(PARTITIONS)]
    cmd += ["--batch-limit", "10", "--poll-interval", "0.2"]
    with log.open("ab") as out:
        return procs.popen(cmd, stdout=out, stderr=out, env={**os.environ, "VIGIL_CONFIG": ""})


def alert_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM alerts").fetchone()[0]


def action_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM alert_actions").fetchone()[0]


def wait_for(predicate, timeout: float, what: str, engine: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if engine.poll() is not None:
            pytest.fail(f"engine exited with {engine.returncode} while waiting for {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def kill9(engine: subprocess.Popen[bytes]) -> None:
    engine.send_signal(signal.SIGKILL)
    engine.wait(10)


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_duplicates_nothing(db: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    add_patients(conn, [f"k{i:03d}" for i in range(PATIENTS)])
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    batches = [readings_of(i, base) for i in range(PATIENTS)]
    expected_alerts = PATIENTS + len(range(0, PATIENTS, 3))
    log = tmp_path / "engine.log"
    for rows in batches[: PATIENTS // 2]:  # a backlog, one ingest transaction per patient
        store_readings(conn, rows)
    engine = start_engine(db, log)
    kills = 0
    try:
        for threshold in (30, 120):
            wait_for(lambda t=threshold: alert_count(conn) >= t, 120, f"{threshold} alerts", engine, log)
            kill9(engine)
            kills += 1
            assert alert_count(conn) < expected_alerts, "the kill came too late to test anything"
            if threshold == 30:
                for rows in batches[PATIENTS // 2 :]:  # the rest arrives while the engine is down
                    store_readings(conn, rows)
            engine = start_engine(db, log)
        wait_for(lambda: alert_count(conn) >= expected_alerts, 120, "every alert", engine, log)
        wait_for(lambda: action_count(conn) >= 2 * expected_alerts, 60, "the first escalation steps", engine, log)
        # The barrier: one more critical reading per partition, stored after everything else. Once
        # each has its alert and both first escalation steps, every partition consumed the feed past
        # all earlier readings and ran its escalations after that: a duplicate would be in by now.
        sentinels = sentinel_patients(PARTITIONS)
        add_patients(conn, sentinels)
        late = [(pid, base + timedelta(minutes=30), "glucose", 45.0) for pid in sentinels]
        store_readings(conn, late)
        batches.append(late)
        wait_for(lambda: sentinel_actions(conn) >= 2 * len(sentinels), 60, "the barrier's alerts", engine, log)
    finally:
        if engine.poll() is None:
            engine.send_signal(signal.SIGTERM)
            engine.wait(30)
    assert kills == 2
    assert engine.returncode == 0, log.read_text()[-3000:]

    rows = conn.execute("SELECT patient_id, rule, severity, alert_id FROM alerts").fetchall()
    per_rule = Counter((p, r) for p, r, _, _ in rows)
    assert max(per_rule.values()) == 1
    opened = Counter(a for (a,) in conn.execute("SELECT alert_id FROM alert_events WHERE type = 'opened'").fetchall())
    assert sorted(opened) == sorted(a for *_, a in rows)
    assert set(opened.values()) == {1}
    actions = conn.execute("SELECT alert_id, round, step, count(*) FROM alert_actions GROUP BY 1, 2, 3").fetchall()
    assert {n for *_, n in actions} == {1}
    assert len(actions) == 2 * len(rows)  # notify + message at once; the timed steps are not due yet

    # The engine decided exactly what the replay decides for the same readings.
    replayer = Replayer(RulesConfig(), anomaly=False)
    flat = sorted(
        (ReplayReading(t, p, m, v) for rs in batches for p, t, m, v in rs), key=lambda r: (r.time, r.patient_id)
    )
    replayed = {(a.patient_id, a.candidate.rule, a.candidate.severity.label) for a in replayer.run(flat)}
    assert {(p, r, s) for p, r, s, _ in rows} == replayed

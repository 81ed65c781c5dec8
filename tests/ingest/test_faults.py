"""Fault catalogue items 1, 2, 3, 4, 6, 13 and 14 against real processes."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from ingest.errors import RefusedToStart
from ingest.service import IngestService
from store.migrate import migrate
from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import SimAgent, readings
from tests.support.pgcluster import PrivateCluster
from vigil_testkit.net import free_port


def assert_exactly_once(db: str, agent: str, last_seq: int) -> None:
    with psycopg.connect(db) as conn:
        n, distinct, lo, hi = conn.execute(
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM readings WHERE agent_id = %s", (agent,)
        ).fetchone()
    assert (n, distinct, lo, hi) == (last_seq, last_seq, 1, last_seq)


def stream(agent: SimAgent, envelopes: int, per: int = 20, pause: float = 0.0) -> threading.Thread:
    def run() -> None:
        for i in range(envelopes):
            agent.send(readings(agent.agent, 1 + i * per, per), wait=False)
            if pause:
                time.sleep(pause)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_synchronous_commit_off_refuses_to_start(db: str, ingest_settings, ingest_process, start_ingest) -> None:
    # Catalogue 6: in process and as `vigil ingest`, with a clear error and a non-zero exit.
    off = make_conninfo(db, options="-c synchronous_commit=off")  # an operator's misconfigured URL
    with pytest.raises(RefusedToStart, match="synchronous_commit"):
        start_ingest(database_url=off)
    proc = ingest_process(database_url=off)
    proc.start()
    assert proc.proc is not None
    assert proc.proc.wait(60) == 3
    assert "synchronous_commit is 'off'" in proc.log()


def test_restarted_consumer_resumes_its_session_and_drains_the_backlog(db: str, start_ingest, agents) -> None:
    # Catalogue 2.
    first = start_ingest(mqtt_client_id="worker-a")
    a = agents("agt-a")
    first.stop()
    for i in range(30):  # published while no ingest runs: queued in worker-a's session
        a.send(readings("agt-a", 1 + 20 * i, 20))
    assert scalar(db, "SELECT count(*) FROM readings") == 0
    second = start_ingest(mqtt_client_id="worker-a")
    a.wait_receipt(600)
    assert second.last_session_present is True
    assert_exactly_once(db, "agt-a", 600)


def test_three_workers_on_one_shared_subscription(db: str, start_ingest, agents) -> None:
    # Catalogue 13: any worker gets any message; order per agent is restored by sequence number.
    workers = [start_ingest(mqtt_client_id=f"worker-{i}", batch_max_messages=7) for i in range(3)]
    sims = [agents(f"agt-{i}") for i in range(4)]
    threads = [stream(s, 40, per=5) for s in sims]
    for t in threads:
        t.join(60)
    for s in sims:
        s.wait_receipt(200, timeout=60)
        assert_exactly_once(db, s.agent, 200)
    assert all(w.committed_batches > 0 for w in workers)  # the group really split the work
    assert scalar(db, "SELECT count(*) FROM agent_gaps") == 0  # no false gaps
    assert scalar(db, "SELECT count(*) FROM agent_resolved") == 0
    assert scalar(db, "SELECT min(through) FROM agent_receipts") == 200


def scrape(port: int, name: str) -> float:
    """A counter from a worker's Prometheus endpoint (0 when it has none yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


@pytest.mark.slow
def test_kill_9_ingest_at_random_points_loses_nothing(db: str, agents, ingest_process) -> None:
    # Catalogue 1: kill -9 before and after COMMIT, many times; the broker redelivers what was not
    # acknowledged and the dedup key absorbs what was committed twice. The agent publishes each
    # envelope once, so a worker that absorbs duplicates proves its predecessor was killed after a
    # COMMIT and before that batch's PUBACK reached the broker: those kills are counted.
    kills = int(os.environ.get("VIGIL_TEST_INGEST_KILLS", "30"))
    port = free_port()
    proc = ingest_process(mqtt_client_id="victim", batch_max_messages=50, batch_max_wait_ms=5, metrics_port=port)
    proc.start()
    a = agents("agt-a", register=False)
    a.register_until_receipt()  # the first ingest process may still be starting
    rnd = random.Random(4)
    done = threading.Event()
    sent = [0]

    def feed() -> None:  # traffic across all the kills, one envelope of 20 readings at a time
        while not done.is_set():
            a.send(readings("agt-a", 1 + sent[0] * 20, 20), wait=False)
            sent[0] += 1
            time.sleep(0.03)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    between_commit_and_puback = 0
    for _ in range(kills):
        time.sleep(rnd.uniform(0.05, 0.8))  # consuming and committing: kill at a random point
        proc.kill()
        connects = proc.log().count("connected to the broker")
        proc.start()
        wait_until(lambda n=connects: proc.log().count("connected to the broker") > n, 30, "restarted worker")
        wait_until(lambda: _reachable(port), 30, "the restarted worker's metrics")
        time.sleep(0.3)  # let it take the redelivered backlog
        if scrape(port, "vigil_ingest_duplicates_total") > 0:
            between_commit_and_puback += 1
    done.set()
    feeder.join(60)
    total = sent[0] * 20
    a.wait_receipt(total, timeout=180)
    assert_exactly_once(db, "agt-a", total)
    assert proc.log().count("session present: True") >= kills  # every restart resumed its session
    print(json.dumps({"catalogue": 1, "kills": kills, "between_commit_and_puback": between_commit_and_puback}))
    assert between_commit_and_puback >= 1  # the dangerous window was really hit, and absorbed
    assert proc.terminate() == 0, proc.log()[-3000:]


def _reachable(port: int) -> bool:
    try:
        scrape(port, "vigil_ingest_duplicates_total")
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_kill_one_of_three_workers_with_unacked_messages(db: str, agents, ingest_process) -> None:
    # Catalogue 14: the killed worker's unacknowledged messages stay in its persistent session and
    # are redelivered when it comes back (systemd restarts it); nothing is lost, nothing doubled.
    procs = [ingest_process(mqtt_client_id=f"w{i}", batch_max_messages=20, batch_max_wait_ms=200) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.wait_connected()
    sims = [agents(f"agt-{i}", register=False) for i in range(3)]
    for s in sims:
        s.register_until_receipt()
    feeders = [stream(s, 100, per=20, pause=0.005) for s in sims]
    time.sleep(1.0)
    procs[1].kill()
    for f in feeders:
        f.join(60)
    time.sleep(0.5)
    procs[1].start()
    procs[1].wait_connected(2)  # the same log file: its second connection
    for s in sims:
        s.wait_receipt(2000, timeout=120)
        assert_exactly_once(db, s.agent, 2000)
    for p in procs:
        assert p.terminate() == 0


def test_broker_kill_9_and_restart_loses_nothing(db: str, broker, start_ingest, agents) -> None:
    # Catalogue 3: the broker's PUBACK is not durability; the agent re-sends whatever has no
    # end-to-end receipt once it is connected again.
    start_ingest(mqtt_client_id="survivor")
    a = agents("agt-a")
    for i in range(10):
        a.send(readings("agt-a", 1 + 20 * i, 20))
    a.wait_receipt(200)
    feeder = stream(a, 20, per=20)  # seq 1..400 again; the first half are duplicates
    broker.proc.kill()
    feeder.join(30)
    broker.proc.start()
    wait_until(lambda: a.client.is_connected(), 30, "agent reconnected")
    last = max(a.receipts)
    for first in range(last + 1, 400, 20):  # the agent's outbox: everything not yet receipted
        a.send(readings("agt-a", first, min(20, 401 - first)))
    a.wait_receipt(400, timeout=60)
    assert_exactly_once(db, "agt-a", 400)


def database_errors(svc: IngestService) -> float:
    """Failed batch attempts so far (``vigil_ingest_database_errors_total``, every reason)."""
    return sum(
        sample.value
        for metric in svc.metrics.registry.collect()
        if metric.name == "vigil_ingest_database_errors"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


@pytest.fixture
def private_pg(tmp_path: Path):
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE vigil")
        migrate(cluster.url("vigil"), flavor="postgres")
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.slow
def test_postgres_stopped_immediately_and_started_again(
    private_pg: PrivateCluster, broker, server_key, start_ingest
) -> None:
    # Catalogue 4: no ack before commit while PostgreSQL is down; nothing lost; recovers by itself.
    from tests.support.agents import provision

    url = private_pg.url("vigil")
    svc = start_ingest(database_url=url)
    a = provision(url, broker, server_key, "agt-a")
    a.connect()
    try:
        a.register()
        a.wait_receipt(0)
        for i in range(5):
            a.send(readings("agt-a", 1 + 20 * i, 20))
        a.wait_receipt(100)
        private_pg.stop("immediate")
        for i in range(5, 15):
            a.send(readings("agt-a", 1 + 20 * i, 20))
        wait_until(lambda: svc.unacknowledged == 10, 20, "messages held unacknowledged")
        # The barrier: two more failed commit attempts after all ten were held (the first may have
        # been under way already). The worker kept at it and had its chance to confirm something,
        # and the receipts still end at 100.
        failed = database_errors(svc)
        wait_until(lambda: database_errors(svc) >= failed + 2, 20, "two more commit attempts")
        assert max(a.receipts) == 100  # nothing confirmed while the database is down
        assert svc.unacknowledged == 10
        assert svc.metrics.registry.get_sample_value("vigil_ingest_database_up") == 0
        private_pg.start()
        a.wait_receipt(300, timeout=60)
        assert svc.unacknowledged == 0
        assert_exactly_once(url, "agt-a", 300)
    finally:
        a.close()


def test_vigil_ingest_module_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vigil_cli", "ingest", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "--client-id" in out.stdout


def test_missing_ca_file_is_a_clear_error(db: str, ingest_process, tmp_path: Path) -> None:
    # A config pointing at a CA certificate that is not there: one line naming the setting, exit 3.
    proc = ingest_process(mqtt_ca_file=tmp_path / "nope" / "ca.pem")
    proc.start()
    assert proc.proc is not None
    assert proc.proc.wait(60) == 3
    assert "mqtt_ca_file" in proc.log()
    assert "Traceback" not in proc.log()


def test_ingest_over_its_own_socket_stores_and_rides_out_a_broker_restart(
    db: str, broker, start_ingest, agents, caplog: pytest.LogCaptureFixture
) -> None:
    # Ingest's own listener (a Unix socket, no TLS): the same consumer, session and receipts as over
    # TLS, and after a broker restart it connects and subscribes again by itself.
    caplog.set_level(logging.INFO, logger="ingest")

    def connects() -> int:
        return sum("connected to the broker" in r.getMessage() for r in caplog.records)

    svc = start_ingest(mqtt_socket=broker.ingest_socket)
    assert any(f"the Unix socket {broker.ingest_socket}" in r.getMessage() for r in caplog.records)
    a = agents("agt-a")  # registered: ingest received the registration and answered with a receipt
    a.send(readings("agt-a", 1, 20))
    a.wait_receipt(20)
    before = connects()
    broker.proc.stop()
    broker.proc.start()
    wait_until(lambda: a.client.is_connected(), 30, "agent reconnected")
    wait_until(lambda: connects() > before and svc.connected, 30, "ingest reconnected over its socket")
    a.send(readings("agt-a", 21, 20))
    a.wait_receipt(40, timeout=60)
    assert_exactly_once(db, "agt-a", 40)

"""The ingest service against real PostgreSQL and the project's TLS+ACL Mosquitto."""

from __future__ import annotations

import psycopg

from rpm_core.reading import SeqRange
from rpm_core.status import AgentStatus, DeviceStatus, seal_status
from tests.ingest.conftest import scalar, wait_until
from tests.support.agents import readings


def test_register_send_store_receipt_status(db: str, start_ingest, agents) -> None:
    svc = start_ingest()
    a = agents("agt-1")  # registration activated the agent and was answered with a receipt
    assert scalar(db, "SELECT status FROM agents WHERE agent_id = 'agt-1'") == "active"
    assert scalar(db, "SELECT enrollment_token_sha256 IS NULL FROM agents WHERE agent_id = 'agt-1'")
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN vigil_readings")
        a.send(readings("agt-1", 1, 20))
        a.send(readings("agt-1", 21, 20), gaps=[SeqRange(first=41, last=45)])
        a.wait_receipt(45)
        note = next(listener.notifies(timeout=5, stop_after=1))
        assert int(note.payload) > 0
    assert scalar(db, "SELECT count(*) FROM readings WHERE patient_id = 'p1' AND org_id = 'clinic-1'") == 40
    assert scalar(db, "SELECT first_seq || '-' || last_seq FROM agent_gaps") == "41-45"
    status = AgentStatus(
        org=a.org,
        agent=a.agent,
        online=True,
        sent_at=a.bundle().expires_at,
        devices=(DeviceStatus(device_id="F0:12:34:56:78:9A", profile="heart_rate", battery_pct=42),),
    )
    topic, data = seal_status(status, agent=a.keys, server=a.server.public())
    a.publish_raw(topic, data)
    wait_until(lambda: scalar(db, "SELECT battery_pct FROM devices") == 42, 10, "device row")
    assert scalar(db, "SELECT last_seen_at IS NOT NULL FROM agents WHERE agent_id = 'agt-1'")
    assert svc.metrics.registry.get_sample_value("vigil_ingest_readings_total") == 40


def test_same_envelope_three_times_is_one_row(db: str, start_ingest, agents) -> None:
    # Catalogue 12 (and 18, replay of an old envelope): absorbed by the dedup key.
    svc = start_ingest()
    a = agents("agt-1")
    topic, data = a.sealed(readings("agt-1", 1, 20))
    for _ in range(3):
        a.publish_raw(topic, data)
    wait_until(lambda: svc.metrics.registry.get_sample_value("vigil_ingest_duplicates_total") == 40, 20, "dups")
    assert scalar(db, "SELECT count(*) FROM readings") == 20
    a.wait_receipt(20)
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0


def test_vigil_ingest_serves_prometheus_metrics(ingest_process) -> None:
    import urllib.request

    from vigil_testkit.net import free_port

    port = free_port()
    proc = ingest_process(metrics_port=port, mqtt_client_id="metrics-probe")
    proc.start()

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    text = wait_until(scrape, 30, "metrics endpoint")
    assert "vigil_ingest_consumer_lag_messages" in text
    assert proc.terminate() == 0


def test_coalesced_pubacks_reach_the_broker(db: str, start_ingest, agents) -> None:
    # The PUBACKs of a batch leave as one write (MqttConsumer.ack_many): had the broker not taken
    # them, the persistent session would redeliver those messages to the same client id.
    first = start_ingest(mqtt_client_id="worker-a", batch_max_wait_ms=200)
    a = agents("agt-1")
    for i in range(30):
        a.send(readings("agt-1", 1 + 20 * i, 20))
    a.wait_receipt(600)
    counted = first.metrics.registry  # counted right after the receipts are published: wait for it
    wait_until(lambda: counted.get_sample_value("vigil_ingest_messages_total", {"kind": "readings"}) == 30, 10, "30")
    assert counted.get_sample_value("vigil_ingest_batch_messages_count") < 30  # batched
    wait_until(lambda: first.unacknowledged == 0, 10, "all acknowledged")
    first.stop()
    second = start_ingest(mqtt_client_id="worker-a")
    assert second.last_session_present is True
    a.send(readings("agt-1", 601, 20))
    a.wait_receipt(620)
    # The worker counts a batch right after publishing its receipts: wait for the count, then check it.
    registry = second.metrics.registry
    wait_until(lambda: registry.get_sample_value("vigil_ingest_messages_total", {"kind": "readings"}), 10, "counted")
    assert registry.get_sample_value("vigil_ingest_duplicates_total") == 0
    assert registry.get_sample_value("vigil_ingest_messages_total", {"kind": "readings"}) == 1
    assert scalar(db, "SELECT count(*) FROM readings") == 620

from __future__ import annotations

import time
from collections import Counter

import psycopg

from alerts.engine import Engine
from alerts.partitions import partition_of, plan_rebalance, target_share
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from store import alerts as alert_store
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.helpers import T0


def test_partition_is_stable_and_spread() -> None:
    assert partition_of("patient-42", 16) == partition_of("patient-42", 16)
    spread = Counter(partition_of(f"p{i}", 8) for i in range(8000))
    assert set(spread) == set(range(8))
    assert min(spread.values()) > 850


def test_rebalance_plans() -> None:
    assert target_share(16, [], me=1) == 16
    assert target_share(16, [1, 2, 3], me=1) == 6
    assert plan_rebalance(8, owned=[0, 1, 2, 3, 4, 5, 6, 7], held_by_others=[], share=4) == ([4, 5, 6, 7], [])
    assert plan_rebalance(8, owned=[], held_by_others=[0, 1, 2, 3], share=4) == ([], [4, 5, 6, 7])
    assert plan_rebalance(8, owned=[4], held_by_others=[0, 1, 2, 3], share=4) == ([], [5, 6, 7])


def test_two_workers_share_the_partitions_and_each_alert_is_made_once(db: str, conn: psycopg.Connection) -> None:
    patients = [f"w{i:02d}" for i in range(40)]
    add_patients(conn, patients)
    clock = ManualClock(T0)
    settings = AlertsSettings(database_url=db, alerts_partitions=8, alerts_rebalance_interval_s=0.001)
    a = Engine(settings, clock=clock, sink=RecordingSink())
    b = Engine(settings, clock=clock, sink=RecordingSink())
    a.connect()
    try:
        a.rebalance()
        assert a.owned == set(range(8))
        b.connect()  # a second worker starts
        b.rebalance()  # nothing free yet
        a.rebalance()  # a sees two workers and gives half back
        b.rebalance()
        assert len(a.owned) == len(b.owned) == 4
        assert a.owned.isdisjoint(b.owned)
        for pid in patients:
            store_readings(conn, [(pid, T0, "glucose", 45.0)])
        deadline = time.monotonic() + 30
        while len(alert_store.list_alerts(conn, org_id="o1", limit=1000)) < len(patients):
            assert time.monotonic() < deadline
            a.run_once()
            b.run_once()
        assert a.stats.readings_seen + b.stats.readings_seen == len(patients)
        assert a.stats.readings_seen > 0
        assert b.stats.readings_seen > 0
        b.close()  # a worker dies: its partitions come back to the other
        # ... as soon as the server has ended its session (that takes the backend a moment).
        deadline = time.monotonic() + 10
        a.rebalance()
        while a.owned != set(range(8)) and time.monotonic() < deadline:
            time.sleep(0.01)
            a.rebalance()
        assert a.owned == set(range(8))
    finally:
        a.close()
        b.close()

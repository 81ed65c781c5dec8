"""Escalation walks with a controllable clock: a critical alert left alone ends in a video
consultation request; acknowledging stops the walk; policies are per organisation."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from alerts import service
from alerts.engine import Engine
from alerts.errors import AlertsConfigError
from alerts.escalation import DEFAULT_POLICY, EscalationPolicy
from alerts.settings import AlertsSettings
from consult.requests import open_requests
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from store import alerts as alert_store
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.helpers import T0
from tests.alerts.test_engine_inprocess import drain


@pytest.fixture
def setup(db: str, conn: psycopg.Connection):
    add_patients(conn, ["p1", "p2"])
    clock = ManualClock(T0)
    e = Engine(
        AlertsSettings(database_url=db, alerts_partitions=2, alerts_rules={"anomaly": {"enabled": False}}),
        clock=clock,
        sink=RecordingSink(),
    )
    e.connect()
    yield conn, clock, e
    e.close()


def actions(conn, alert_id: int) -> list[tuple[str, str]]:
    return [(a.action, a.status) for a in alert_store.alert_actions(conn, alert_id)]


def critical_alert(conn, clock, e, patient: str, n: int) -> int:
    store_readings(conn, [(patient, clock.now(), "glucose", 45.0)])  # level 2 hypoglycaemia: critical
    drain(e, n)
    (row,) = alert_store.list_alerts(conn, patient_id=patient)
    assert row.severity == "critical"
    return row.alert_id


def test_unacknowledged_critical_walks_to_a_video_consult_request(setup) -> None:
    conn, clock, e = setup
    a = critical_alert(conn, clock, e, "p1", 1)
    assert actions(conn, a) == [("notify_care_team", "done"), ("message_patient", "done")]
    clock.advance(14 * 60)
    e.run_once()
    assert len(actions(conn, a)) == 2
    clock.advance(60)
    e.run_once()
    assert actions(conn, a)[-1] == ("page_backup", "done")
    clock.advance(15 * 60)
    e.run_once()
    assert actions(conn, a)[-1] == ("request_video_consult", "done")
    (request,) = open_requests(conn, org_id="o1")
    assert (request.patient_id, request.alert_id, request.kind, request.status) == ("p1", a, "video", "requested")
    assert request.requested_at == T0 + timedelta(minutes=30)
    done = alert_store.alert_actions(conn, a)[-1]
    assert done.result == {"delivery": "recorded", "consult_request_id": request.request_id}
    assert alert_store.get_alert(conn, a).esc_next_at is None  # the walk is over
    clock.advance(3600)
    e.run_once()
    assert len(actions(conn, a)) == 4
    escalations = [ev for ev in alert_store.alert_events(conn, a) if ev.type == "escalation"]
    assert [ev.data["action"] for ev in escalations] == [s.action.value for s in DEFAULT_POLICY.critical]


def test_acknowledging_stops_the_walk(setup) -> None:
    conn, clock, e = setup
    a = critical_alert(conn, clock, e, "p2", 1)
    clock.advance(16 * 60)
    e.run_once()
    assert actions(conn, a)[-1] == ("page_backup", "done")
    service.acknowledge(conn, a, by="dr-backup", now=clock.now())
    clock.advance(4 * 3600)
    e.run_once()
    assert actions(conn, a)[-1] == ("page_backup", "done")
    assert open_requests(conn, org_id="o1") == []


def test_a_late_engine_catches_up_every_due_step_once(setup) -> None:
    conn, clock, e = setup
    a = critical_alert(conn, clock, e, "p1", 1)
    clock.advance(3 * 3600)  # the engine was stopped for three hours
    e.run_once()
    e.run_once()
    assert [x for x, _ in actions(conn, a)] == [s.action.value for s in DEFAULT_POLICY.critical]
    (row,) = alert_store.alert_actions(conn, a)[-1:]
    assert row.due_at == T0 + timedelta(minutes=30)


def test_organisation_policy_is_stored_and_validated(setup) -> None:
    conn, clock, e = setup
    policy = EscalationPolicy.parse(
        {"critical": [{"action": "page_backup"}, {"action": "request_video_consult", "after_min": 5}]}
    )
    with conn.transaction():
        assert alert_store.put_policy(conn, "o1", policy.model_dump(mode="json")) == 1
    a = critical_alert(conn, clock, e, "p1", 1)
    clock.advance(5 * 60)
    e.run_once()
    assert actions(conn, a) == [("page_backup", "done"), ("request_video_consult", "done")]
    with pytest.raises(AlertsConfigError):
        EscalationPolicy.parse({"critical": [{"action": "page_backup"}]})  # must end in a video consult
    with pytest.raises(AlertsConfigError):
        EscalationPolicy.parse(
            {"critical": [{"action": "page_backup", "after_min": 10}, {"action": "request_video_consult"}]}
        )

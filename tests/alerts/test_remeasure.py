"""Issue 14, spot checks and single readings: the engine opens an unconfirmed alert, records a
``request_remeasure`` action through the escalation machinery (EscalationSink, alert_actions), and
the repeat confirms it (the severity's walk starts) or refutes it (auto-resolved). Real PostgreSQL,
the engine in this process, a ManualClock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from alerts.engine import Engine
from alerts.errors import AlertsConfigError
from alerts.escalation import EscalationPolicy
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from store import alerts as alert_store
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.helpers import T0
from tests.alerts.test_engine_inprocess import drain
from vigil_cli.alerts import app


@pytest.fixture
def engine(db: str, conn: psycopg.Connection):
    add_patients(conn, ["p1", "p2", "p3"])
    clock = ManualClock(T0)
    settings = AlertsSettings(database_url=db, alerts_partitions=2, alerts_rules={"anomaly": {"enabled": False}})
    e = Engine(settings, clock=clock, sink=RecordingSink())
    e.connect()
    yield conn, clock, e
    e.close()


def actions(conn, alert_id: int) -> list[tuple[str, str, dict, dict]]:
    return [(a.action, a.status, a.params, a.result) for a in alert_store.alert_actions(conn, alert_id)]


def events(conn, alert_id: int) -> list[str]:
    return [e.type for e in alert_store.alert_events(conn, alert_id)]


def test_a_single_low_reading_asks_for_a_repeat_and_the_repeat_confirms(engine) -> None:
    conn, clock, e = engine
    store_readings(conn, [("p1", T0, "spo2", 97.0)])
    clock.advance(3600)
    store_readings(conn, [("p1", clock.now(), "spo2", 90.0)])
    drain(e, 2)
    (row,) = alert_store.list_alerts(conn, patient_id="p1")
    assert (row.rule, row.severity, row.unconfirmed, row.state) == ("threshold:spo2:low", "high", True, "open")
    assert row.detail["awaiting_confirmation"] is True
    (only,) = actions(conn, row.alert_id)  # the patient is asked; nobody is paged
    assert only[:2] == ("request_remeasure", "done")
    assert only[2]["metrics"] == "spo2"
    assert only[3] == {"delivery": "recorded", "remeasure": ["spo2"]}
    clock.advance(10 * 60)
    e.run_once()
    assert len(actions(conn, row.alert_id)) == 1  # the unconfirmed walk has nothing more by default
    store_readings(conn, [("p1", clock.now(), "spo2", 89.0)])  # the repeat
    drain(e, 3)
    row = alert_store.get_alert(conn, row.alert_id)
    assert (row.unconfirmed, row.severity, row.esc_round) == (False, "high", 2)
    assert [a[0] for a in actions(conn, row.alert_id)] == ["request_remeasure", "notify_care_team", "message_patient"]
    assert events(conn, row.alert_id)[:4] == ["opened", "escalation", "confirmed", "escalation"]


def test_a_normal_repeat_refutes_and_resolves_the_unconfirmed_alert(engine) -> None:
    conn, clock, e = engine
    store_readings(conn, [("p2", T0, "heart_rate", 36.0)])
    drain(e, 1)
    (row,) = alert_store.list_alerts(conn, patient_id="p2")
    assert (row.rule, row.unconfirmed) == ("threshold:heart_rate:low", True)
    clock.advance(15 * 60)
    store_readings(conn, [("p2", clock.now(), "heart_rate", 64.0)])
    drain(e, 2)
    row = alert_store.get_alert(conn, row.alert_id)
    assert (row.state, row.resolution) == ("resolved", "auto")
    resolved = alert_store.alert_events(conn, row.alert_id)[-1]
    assert (resolved.type, resolved.data.get("refuted")) == ("auto_resolved", True)
    assert [a[0] for a in actions(conn, row.alert_id)] == ["request_remeasure"]


def test_a_spot_check_of_several_parameters_asks_for_each_to_be_repeated(engine) -> None:
    conn, clock, e = engine
    spot = [("respiratory_rate", 22.0), ("spo2", 94.0), ("heart_rate", 115.0), ("body_temperature", 38.3)]
    store_readings(conn, [("p3", T0 + timedelta(minutes=i), m, v) for i, (m, v) in enumerate(spot)])
    clock.set(T0 + timedelta(minutes=5))
    drain(e, 4)
    (row,) = [r for r in alert_store.list_alerts(conn, patient_id="p3") if r.rule == "news2"]
    assert (row.severity, row.unconfirmed, row.detail["score"]) == ("high", True, 6)
    (ask,) = actions(conn, row.alert_id)
    assert ask[0] == "request_remeasure"
    assert set(ask[2]["metrics"].split(",")) == {"respiratory_rate", "spo2", "heart_rate", "body_temperature"}
    repeat = [("respiratory_rate", 23.0), ("spo2", 94.0), ("heart_rate", 117.0), ("body_temperature", 38.4)]
    store_readings(conn, [("p3", T0 + timedelta(minutes=20 + i), m, v) for i, (m, v) in enumerate(repeat)])
    clock.set(T0 + timedelta(minutes=25))
    drain(e, 8)
    row = alert_store.get_alert(conn, row.alert_id)
    assert (row.unconfirmed, row.severity) == (False, "high")
    assert "notify_care_team" in [a[0] for a in actions(conn, row.alert_id)]


def test_policies_validate_the_remeasure_step(tmp_path: Path, db: str, conn: psycopg.Connection) -> None:
    critical = [{"action": "request_video_consult"}]
    with pytest.raises(AlertsConfigError, match="belongs to the unconfirmed steps"):
        EscalationPolicy.parse({"high": [{"action": "request_remeasure"}], "critical": critical})
    with pytest.raises(AlertsConfigError, match="must ask for the repeat"):
        EscalationPolicy.parse({"critical": critical, "unconfirmed": [{"action": "notify_care_team"}]})
    with pytest.raises(AlertsConfigError, match="does not request a video consult"):
        EscalationPolicy.parse({"critical": critical, "unconfirmed": [{"action": "request_remeasure"}, *critical]})
    with pytest.raises(AlertsConfigError):
        EscalationPolicy.parse({"critical": critical, "unconfirmed": [{"action": "order_pizza"}]})
    ok = EscalationPolicy.parse(
        {
            "critical": critical,
            "unconfirmed": [{"action": "request_remeasure"}, {"action": "notify_care_team", "after_min": 60}],
        }
    )
    assert [s.action.value for s in ok.steps("high", unconfirmed=True)] == ["request_remeasure", "notify_care_team"]
    # A hostile policy through the CLI is refused and nothing is stored.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"critical": critical, "low": [{"action": "request_remeasure"}]}))
    done = CliRunner().invoke(app, ["policy", "o1", "--set", str(bad), "--database-url", db])
    assert done.exit_code == 2
    assert alert_store.get_policy(conn, "o1") is None

"""Issue 14, item 7: monitoring pauses and baselines accepted as the patient's own, through the
``vigil alerts`` commands and the functions the clinician API will call, against real PostgreSQL
and the engine in this process; and what they refuse."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from alerts import monitoring
from alerts.config import RulesConfig
from alerts.engine import Engine
from alerts.errors import MonitoringRequestError, PatientNotFound
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from store import alerts as alert_store
from store import monitoring_pauses
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.test_engine_inprocess import drain
from vigil_cli.alerts import app

runner = CliRunner()
# The CLI stamps pauses with the real clock: the engine's clock starts at the real time here and
# follows the pause's own times.
NOW = datetime.now(UTC).replace(microsecond=0)


def daily(pid: str, metric: str, value: float, days: int, end: datetime) -> list:
    return [(pid, end - timedelta(days=days - 1 - d), metric, value) for d in range(days)]


@pytest.fixture
def setup(db: str, conn: psycopg.Connection):
    add_patients(conn, ["p1", "p2"])
    clock = ManualClock(NOW)
    settings = AlertsSettings(database_url=db, alerts_partitions=2, alerts_rules={"anomaly": {"enabled": False}})
    e = Engine(settings, clock=clock, sink=RecordingSink())
    e.connect()
    yield conn, clock, e, ["--database-url", db]
    e.close()


def missing(conn, pid: str, state: str = "open") -> list:
    return [a for a in alert_store.list_alerts(conn, patient_id=pid, states=[state]) if a.kind == "missing_data"]


def test_a_pause_resolves_missing_data_holds_it_off_and_silence_counts_from_its_end(setup) -> None:
    conn, clock, e, url = setup
    rows = daily("p1", "body_weight", 80.0, 20, NOW - timedelta(days=5))  # stopped weighing 5 days ago
    store_readings(conn, rows)
    drain(e, len(rows))
    clock.advance(31 * 60)  # the upload of those old readings has settled
    e.scheduled(clock.now())
    assert len(missing(conn, "p1")) == 1
    t = clock.now()
    until = (t + timedelta(days=7)).isoformat()
    done = runner.invoke(
        app, ["pause", "p1", "--by", "nurse-1", "--from", t.isoformat(), "--until", until, "--reason", "hospital", *url]
    )
    assert done.exit_code == 0, done.output
    pause = json.loads(done.stdout)
    assert (pause["reason"], pause["created_by"], pause["starts_at"]) == ("hospital", "nurse-1", t.isoformat())
    clock.advance(60)
    e.scheduled(clock.now())
    assert missing(conn, "p1") == []  # nothing is expected of an admitted patient
    assert missing(conn, "p1", "resolved")[0].resolution == "auto"
    for hours in (24, 72, 6 * 24):
        clock.set(t + timedelta(hours=hours))
        e.scheduled(clock.now())
        assert missing(conn, "p1") == [], hours
    clock.set(t + timedelta(days=7, hours=95))  # 95 h after the pause: within 4 typical gaps of its end
    e.scheduled(clock.now())
    assert missing(conn, "p1") == []
    clock.set(t + timedelta(days=7, hours=97))
    e.scheduled(clock.now())
    assert len(missing(conn, "p1")) == 1
    # Charts: the pause of a time range, as the store gives it and as the CLI prints it.
    (row,) = monitoring_pauses.pauses_between(conn, "o1", "p1", t - timedelta(days=1), t + timedelta(days=1))
    assert row.pause_id == pause["pause_id"]
    assert monitoring_pauses.pauses_between(conn, "o1", "p1", t + timedelta(days=8), t + timedelta(days=9)) == []
    listed = runner.invoke(app, ["pauses", "p1", "--org", "o1", *url])
    assert [json.loads(x)["pause_id"] for x in listed.stdout.splitlines()] == [pause["pause_id"]]


def test_resume_ends_the_pause_early_and_readings_during_a_pause_still_alert(setup) -> None:
    conn, clock, e, url = setup
    assert (
        runner.invoke(app, ["pause", "p2", "--by", "dr-a", "--until", "+3d", "--reason", "travel", *url]).exit_code == 0
    )
    store_readings(conn, [("p2", clock.now(), "glucose", 45.0)])  # measured anyway while travelling
    drain(e, 1)
    (alert,) = alert_store.list_alerts(conn, patient_id="p2")
    assert (alert.rule, alert.severity) == ("threshold:glucose:low", "critical")  # a danger is never ignored
    done = runner.invoke(app, ["resume", "p2", "--by", "dr-a", *url])
    assert done.exit_code == 0, done.output
    ended = json.loads(done.stdout)
    assert ended["resumed_by"] == "dr-a"
    assert ended["ends_at"] < ended["planned_ends_at"]
    again = runner.invoke(app, ["resume", "p2", "--by", "dr-a", *url])
    assert (again.exit_code, "not paused" in again.output) == (1, True)


@pytest.mark.parametrize(
    ("args", "code", "why"),
    [
        (["p1", "--until", "+0h", "--reason", "x"], 1, "must end after it starts"),
        (["p1", "--until", "2020-01-01T00:00:00", "--reason", "x"], 1, "must end after it starts"),
        (["p1", "--until", "+91d", "--reason", "x"], 1, "at most 90 days"),
        (["p1", "--until", "+1d", "--reason", "   "], 1, "reason is required"),
        (["p1", "--until", "+1d", "--reason", "x" * 501], 1, "longer than 500"),
        (["p1", "--until", "+1d", "--reason", "travel\x1b[2J"], 1, "control"),
        (["p1", "--until", "tomorrow-ish", "--reason", "x"], 2, "not an ISO 8601 time"),
        (["p1", "--until", "0001-01-01T00:00:00+14:00", "--reason", "x"], 2, "not an ISO 8601 time"),
        (["p1", "--until", "+99999d", "--reason", "x"], 2, "not an ISO 8601 time"),
        (["p1", "--until", "+1d", "--reason", "x", "--from", "2020-01-01T00:00:00"], 1, "cannot start in the past"),
        (["nobody", "--until", "+1d", "--reason", "x"], 1, "no such patient"),
        (["p' OR '1'='1", "--until", "+1d", "--reason", "x"], 1, "no such patient"),
        (["p" * 5000, "--until", "+1d", "--reason", "x"], 1, "no such patient"),
    ],
)
def test_hostile_or_careless_pauses_are_refused_and_nothing_is_written(setup, args, code, why) -> None:
    conn, _, _, url = setup
    done = runner.invoke(app, ["pause", *args, "--by", "nurse-1", *url])
    assert done.exit_code == code, done.output
    assert why in done.output
    assert conn.execute("SELECT count(*) FROM monitoring_pauses").fetchone()[0] == 0


def test_refusals_are_logged_with_ids_only(setup, caplog: pytest.LogCaptureFixture) -> None:
    conn, _, _, _ = setup
    caplog.set_level(logging.WARNING, logger="alerts.monitoring")
    with pytest.raises(PatientNotFound):
        monitoring.pause_monitoring(
            conn, "ghost", until=NOW + timedelta(days=1), reason="secret ward 7", by="u1", now=NOW
        )
    with pytest.raises(MonitoringRequestError):
        monitoring.pause_monitoring(conn, "p1", until=NOW - timedelta(days=1), reason="secret ward 7", by="u1", now=NOW)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all("u1" in m for m in messages)
    assert not any("secret ward" in m for m in messages)  # the reason is PHI: never logged


def test_accepting_a_baseline_resolves_the_alert_and_the_patient_normal_stops_alerting(setup) -> None:
    conn, clock, e, url = setup
    copd = [("p1", NOW - timedelta(hours=12 * k), "spo2", 92.0 + (k % 2)) for k in range(28, -1, -1)]
    store_readings(conn, copd)
    drain(e, len(copd))
    (alert,) = alert_store.list_alerts(conn, patient_id="p1")
    assert (alert.rule, alert.state, alert.unconfirmed) == ("threshold:spo2:low", "open", False)
    done = runner.invoke(
        app,
        [
            "baseline",
            "accept",
            "p1",
            "threshold:spo2:low",
            "--by",
            "dr-b",
            "--reason",
            "stable COPD, 92-93 % for years",
            *url,
        ],
    )
    assert done.exit_code == 0, done.output
    accepted = json.loads(done.stdout)
    assert (accepted["value"], accepted["alert_id"], accepted["accepted_by"]) == (92.0, alert.alert_id, "dr-b")
    alert = alert_store.get_alert(conn, alert.alert_id)
    assert (alert.state, alert.resolution, alert.resolved_by) == ("resolved", "clinician", "dr-b")
    assert "stable COPD" in (alert.resolution_note or "")
    clock.advance(3600)
    store_readings(conn, [("p1", clock.now(), "spo2", 92.0), ("p1", clock.now() + timedelta(minutes=1), "spo2", 93.0)])
    drain(e, len(copd) + 2)
    assert alert_store.list_alerts(conn, patient_id="p1", states=["open"]) == []
    store_readings(conn, [("p1", clock.now() + timedelta(minutes=2), "spo2", 84.0)])  # beyond her normal
    drain(e, len(copd) + 3)
    (worse,) = alert_store.list_alerts(conn, patient_id="p1", states=["open"])
    assert (worse.rule, worse.severity) == ("threshold:spo2:low", "high")
    done = runner.invoke(
        app, ["baseline", "revoke", "p1", "threshold:spo2:low", "--by", "dr-b", "--reason", "exacerbation", *url]
    )
    assert done.exit_code == 0, done.output
    history = runner.invoke(app, ["baseline", "list", "p1", "--org", "o1", *url])
    (row,) = [json.loads(x) for x in history.stdout.splitlines()]
    assert (row["revoked_by"], row["value"]) == ("dr-b", 92.0)


@pytest.mark.parametrize(
    ("rule", "extra", "why"),
    [
        ("news2", [], "only threshold rules"),
        ("threshold:shoe_size:low", [], "only threshold rules"),
        ("threshold:spo2:sideways", [], "only threshold rules"),
        ("threshold:spo2:low", ["--value", "500"], "outside the plausible range"),
        ("threshold:spo2:low", [], "no recent readings"),
    ],
)
def test_baselines_that_cannot_be_accepted_are_refused(setup, rule, extra, why) -> None:
    conn, _, _, url = setup
    done = runner.invoke(app, ["baseline", "accept", "p2", rule, "--by", "dr-b", "--reason", "r", *extra, *url])
    assert done.exit_code == 1, done.output
    assert why in done.output
    assert conn.execute("SELECT count(*) FROM patient_baselines").fetchone()[0] == 0


def test_the_engine_suggests_a_baseline_after_two_weeks_of_a_stable_open_alert(setup, db: str) -> None:
    conn, _, fixture_engine, url = setup
    fixture_engine.close()  # this test's engine lives 15 days in the past: it takes every partition
    start = NOW - timedelta(days=15)
    rows = [("p1", start + timedelta(hours=12 * k), "spo2", 92.0 + (k % 3 == 0)) for k in range(31)]
    clock = ManualClock(start)
    e = Engine(
        AlertsSettings(database_url=db, alerts_partitions=2, alerts_rules={"anomaly": {"enabled": False}}),
        clock=clock,
        sink=RecordingSink(),
    )
    e.connect()
    for r in rows:  # readings arrive as they are taken
        clock.set(r[1])
        store_readings(conn, [r])
        drain(e, rows.index(r) + 1)
    (alert,) = alert_store.list_alerts(conn, patient_id="p1")
    assert alert.opened_at < NOW - timedelta(days=14)
    e.scheduled(clock.now())
    (event,) = [ev for ev in alert_store.alert_events(conn, alert.alert_id) if ev.type == "baseline_suggested"]
    assert (event.data["rule"], event.data["value"]) == ("threshold:spo2:low", 92.0)
    e.scheduled(clock.now() + timedelta(hours=1))  # suggested once
    assert [ev.type for ev in alert_store.alert_events(conn, alert.alert_id)].count("baseline_suggested") == 1
    listed = json.loads(runner.invoke(app, ["list", "--patient", "p1", *url]).stdout.splitlines()[0])
    assert listed["baseline_suggested"]["value"] == 92.0
    shown = runner.invoke(app, ["events", str(alert.alert_id), *url])
    assert "baseline_suggested" in [json.loads(x)["type"] for x in shown.stdout.splitlines()]
    assert (
        monitoring.accept_baseline(
            conn, "p1", "threshold:spo2:low", by="dr-c", reason="as suggested", now=clock.now(), rules=RulesConfig()
        ).value
        == 92.0
    )
    e.close()

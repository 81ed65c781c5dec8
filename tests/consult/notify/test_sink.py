"""The escalation sink: it satisfies alerts' EscalationSink Protocol structurally (checked by mypy
from outside, since consult may not import alerts), queues its notifications in the escalation's
own transaction, resolves recipients from the care teams by role, and delivers the steps the alert
engine may hand it — request_remeasure included — like the patient message."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from mypy import api as mypy_api

from alerts.escalation import EscalationAction, EscalationSink
from consult.notify.sink import NotifyingSink
from consult.notify.templates import patient_message_text
from consult.sinks import RecordingSink
from store import alerts as alert_store
from store import notification_outbox as outbox
from store import notification_prefs as prefs
from tests.clinician_api.world import T0
from tests.consult.notify.conftest import escalate, open_alert

ROOT = Path(__file__).resolve().parents[3]


def test_the_sink_satisfies_the_protocol_statically(tmp_path) -> None:
    snippet = tmp_path / "conformance.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from alerts.escalation import EscalationSink
            from consult.notify.sink import NotifyingSink

            sink: EscalationSink = NotifyingSink()
            """
        )
    )
    broken = tmp_path / "broken.py"  # the check can fail: a sink with the wrong signature is refused
    broken.write_text(
        textwrap.dedent(
            """
            from datetime import datetime
            from alerts.escalation import EscalationSink

            class Wrong:
                def deliver(self, conn: object, action: int, now: datetime) -> None: ...

            sink: EscalationSink = Wrong()
            """
        )
    )
    args = [
        "--strict",
        "--no-incremental",
        "--cache-dir",
        str(tmp_path / ".mypy"),
        "--config-file",
        str(ROOT / "pyproject.toml"),
    ]
    out, err, status = mypy_api.run([*args, str(snippet)])
    assert status == 0, out + err
    out, _, status = mypy_api.run([*args, str(broken)])
    assert status == 1
    assert "Incompatible types in assignment" in out


def test_the_sinks_have_the_same_signature() -> None:
    wanted = inspect.signature(EscalationSink.deliver)
    assert inspect.signature(NotifyingSink.deliver).parameters.keys() == wanted.parameters.keys()
    assert inspect.signature(RecordingSink.deliver).parameters.keys() == wanted.parameters.keys()


def _queued(url: str, alert_id: int) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return sorted((r.kind, r.channel, r.recipient_user_id) for r in outbox.alert_notifications(conn, alert_id))


def test_an_escalation_that_rolls_back_queues_nothing(world) -> None:
    alert = open_alert(world.url, severity="high")

    class Boom(Exception):
        pass

    class Failing(NotifyingSink):
        def deliver(self, conn, action, now) -> None:
            super().deliver(conn, action, now)
            raise Boom

    from alerts.escalation import run_escalations

    with psycopg.connect(world.url, autocommit=True) as conn, pytest.raises(Boom):
        run_escalations(conn, T0, Failing())
    assert _queued(world.url, alert) == []
    with psycopg.connect(world.url) as conn:
        assert alert_store.alert_actions(conn, alert) == []


def test_recipients_by_role_and_preferences(world) -> None:
    with psycopg.connect(world.url, autocommit=True) as conn:
        prefs.put_preferences(
            conn, world["c1"].user_id, "o1", prefs.Preferences(channels=("sms",), sms_number="+15551234567"), T0
        )
    alert = open_alert(world.url, severity="high")
    escalate(world.url, T0)
    escalate(world.url, T0.replace(hour=9, minute=1))  # page_backup (60 min) is due
    n1, c1, pu1 = world["n1"].user_id, world["c1"].user_id, world["pu1"].user_id
    assert _queued(world.url, alert) == sorted(
        [
            ("alert_care_team", "email", n1),  # the nurse first (defaults: email and in-app)
            ("alert_care_team", "in_app", n1),
            ("patient_message", "email", pu1),
            ("patient_message", "in_app", pu1),
            ("alert_page", "email", c1),  # the clinician is paged on every reachable channel
            ("alert_page", "in_app", c1),
            ("alert_page", "sms", c1),
        ]
    )
    with psycopg.connect(world.url) as conn:
        results = [a.result for a in alert_store.alert_actions(conn, alert)]
    assert [r["delivery"] for r in results] == ["queued", "queued", "queued"]
    assert [r["recipients"] for r in results] == [1, 1, 1]


def test_a_critical_alert_reaches_every_channel_and_a_consult_request_notifies(world) -> None:
    with psycopg.connect(world.url, autocommit=True) as conn:
        prefs.put_preferences(
            conn, world["n1"].user_id, "o1", prefs.Preferences(channels=("email",), push_token="tok-n1"), T0
        )
    alert = open_alert(world.url, severity="critical")
    escalate(world.url, T0.replace(minute=30))
    with psycopg.connect(world.url) as conn:
        queued = outbox.alert_notifications(conn, alert)
        (consult,) = [a for a in alert_store.alert_actions(conn, alert) if a.action == "request_video_consult"]
    assert consult.result["consult_request_id"] > 0
    n1 = world["n1"].user_id
    assert {r.channel for r in queued if r.recipient_user_id == n1 and r.kind == "alert_care_team"} == {
        "email",
        "in_app",
        "push",
    }
    assert all(r.urgent for r in queued)
    assert {r.recipient_user_id for r in queued if r.kind == "video_consult_requested"} == {
        n1,
        world["c1"].user_id,
    }


@dataclass(frozen=True)
class Step:
    """A due step as the engine hands it over (any object with these attributes will do)."""

    action_id: int
    alert_id: int
    org_id: str
    patient_id: str
    action: str
    severity: str
    step: int
    due_at: datetime
    params: dict[str, str] = field(default_factory=dict)


def test_request_remeasure_is_delivered_to_the_patient(world) -> None:
    alert = open_alert(world.url, severity="medium")
    with psycopg.connect(world.url, autocommit=True) as conn, conn.transaction():
        (row,) = alert_store.list_alerts(conn, patient_id="p1")
        # The alert engine's migration 0060 adds the step kind; before it, message_patient's row stands in.
        action_id = alert_store.record_action(conn, row, step=0, action="message_patient", due_at=T0, params={})
        NotifyingSink().deliver(
            conn,
            Step(
                action_id,
                alert,
                "o1",
                "p1",
                "request_remeasure",
                "medium",
                0,
                T0,
                {"metrics": "bp_systolic,bp_diastolic"},
            ),
            T0,
        )
        (action,) = alert_store.alert_actions(conn, alert)
    assert action.status == "done"
    assert action.result["remeasure"] == ["bp_systolic", "bp_diastolic"]
    pu1 = world["pu1"].user_id
    assert _queued(world.url, alert) == [("patient_message", "email", pu1), ("patient_message", "in_app", pu1)]
    with psycopg.connect(world.url) as conn:
        (in_app,) = [r for r in outbox.alert_notifications(conn, alert) if r.channel == "in_app"]
    assert patient_message_text(in_app.params) == (
        "Your care team asks you to measure your blood pressure again now, the way you usually do."
    )


def test_a_typed_engine_action_goes_through(world) -> None:
    alert = open_alert(world.url, severity="low")
    with psycopg.connect(world.url, autocommit=True) as conn, conn.transaction():
        (row,) = alert_store.list_alerts(conn, patient_id="p1")
        action_id = alert_store.record_action(conn, row, step=0, action="notify_care_team", due_at=T0, params={})
        NotifyingSink().deliver(
            conn,
            EscalationAction(
                action_id=action_id,
                alert_id=alert,
                org_id="o1",
                patient_id="p1",
                action="notify_care_team",
                severity="low",
                step=0,
                due_at=T0,
                params={},
            ),
            T0,
        )
    assert [k for k, _, _ in _queued(world.url, alert)] == ["alert_care_team", "alert_care_team"]

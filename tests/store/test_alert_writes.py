"""The batched lifecycle writes leave exactly the rows and events the one-statement functions leave."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from store import alerts as alert_store
from store.alert_writes import AlertWrites
from store.alerts import NewAlert, Trigger

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        c.execute(
            "INSERT INTO patients (patient_id, org_id, display_name) VALUES ('one', 'o1', 'A'), ('batch', 'o1', 'B')"
        )
        yield c


def new(patient: str, rule: str, at: datetime, *, unconfirmed: bool = False) -> NewAlert:
    return NewAlert(
        org_id="o1",
        patient_id=patient,
        rule=rule,
        kind="threshold",
        metric="spo2",
        severity="medium",
        summary="spo2 low",
        evidence=[{"time": at.isoformat(), "metric": "spo2", "value": 93.0}],
        detail={"band": 1},
        opened_at=at,
        esc_next_at=at + timedelta(minutes=5),
        unconfirmed=unconfirmed,
    )


def trigger(alert_id: int, at: datetime, **kw: Any) -> Trigger:
    base: dict[str, Any] = {
        "severity": "medium",
        "previous_severity": "medium",
        "raised": False,
        "reopened": False,
        "unsnoozed": False,
        "was_cleared": False,
        "update_evidence": False,
    }
    base |= kw
    return Trigger(
        alert_id=alert_id,
        org_id="o1",
        at=at,
        summary=f"summary at {at:%H:%M}",
        evidence=[{"t": at.isoformat()}],
        detail={"at": at.isoformat()},
        esc_next_at=at + timedelta(minutes=1) if base["raised"] or kw.get("confirms") else None,
        **base,
    )


class OneByOne:
    """The same interface over the one-statement functions."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.pending: dict[int, int] = {}
        self._next = -1

    def new_alert_id(self) -> int:
        self._next -= 1
        return self._next

    def insert(self, alert_id: int, a: NewAlert) -> None:
        self.pending[alert_id] = alert_store.insert_alert(self.conn, a)

    def id(self, alert_id: int) -> int:
        return self.pending.get(alert_id, alert_id)

    def trigger(self, t: Trigger) -> None:
        alert_store.apply_trigger(self.conn, Trigger(**{**_fields(t), "alert_id": self.id(t.alert_id)}))

    def mark_cleared(self, alert_id: int, org_id: str, since: datetime) -> None:
        alert_store.mark_cleared(self.conn, self.id(alert_id), org_id, since)

    def resolve(self, alert_id: int, org_id: str, at: datetime, **kw: Any) -> None:
        alert_store.resolve_alert(self.conn, self.id(alert_id), org_id, at, **kw)

    def flush(self) -> None:
        pass


def _fields(t: Trigger) -> dict[str, Any]:
    return {f: getattr(t, f) for f in Trigger.__dataclass_fields__}


def script(w: Any, patient: str, due_action: Callable[[int], None]) -> None:
    """A page's worth of changes, several to the same alerts, in the engine's order."""
    a = w.new_alert_id()
    w.insert(a, new(patient, "threshold:spo2:low", T0, unconfirmed=True))
    b = w.new_alert_id()
    w.insert(b, new(patient, "threshold:heart_rate:high", T0))
    w.trigger(trigger(a, T0 + timedelta(minutes=10), confirms=True, update_evidence=True))
    w.mark_cleared(b, "o1", T0 + timedelta(minutes=11))
    w.mark_cleared(b, "o1", T0 + timedelta(minutes=12))  # already cleared: no second event
    w.trigger(trigger(b, T0 + timedelta(minutes=20), was_cleared=True))
    w.trigger(trigger(a, T0 + timedelta(minutes=30), severity="high", raised=True, update_evidence=True))
    w.flush()
    due_action(w.id(a) if isinstance(w, OneByOne) else a)
    w.mark_cleared(a, "o1", T0 + timedelta(minutes=40))
    w.resolve(a, "o1", T0 + timedelta(hours=2), by="engine", resolution="auto", note=None, data={"x": 1})
    c = w.new_alert_id()  # the same rule again, once resolved
    w.insert(c, new(patient, "threshold:spo2:low", T0 + timedelta(hours=3)))
    w.resolve(b, "o1", T0 + timedelta(hours=3), by="engine", resolution="auto", note="n", data={})
    w.flush()


def state(conn: psycopg.Connection, patient: str) -> list[tuple[Any, ...]]:
    alerts = conn.execute(
        "SELECT alert_id, rule, kind, metric, severity, state, summary, evidence, detail, opened_at, updated_at, "
        "last_triggered_at, cleared_since, resolved_at, resolved_by, resolution, resolution_note, esc_severity, "
        "esc_round, esc_started_at, esc_step, esc_next_at, unconfirmed FROM alerts WHERE patient_id = %s "
        "ORDER BY alert_id",
        (patient,),
    ).fetchall()
    out = []
    for alert_id, *row in alerts:
        events = conn.execute(
            "SELECT at, type, actor, note, data FROM alert_events WHERE alert_id = %s ORDER BY event_id", (alert_id,)
        ).fetchall()
        actions = conn.execute("SELECT status, done_at FROM alert_actions WHERE alert_id = %s", (alert_id,)).fetchall()
        out.append((*row, events, actions))
    return out


def test_batched_writes_equal_the_one_statement_functions(conn: psycopg.Connection) -> None:
    def due_action(c: psycopg.Connection) -> Callable[[int], None]:
        def add(alert_id: int) -> None:
            c.execute(
                "INSERT INTO alert_actions (alert_id, org_id, patient_id, round, step, action, severity, due_at) "
                "SELECT alert_id, org_id, patient_id, esc_round, 1, 'notify_care_team', severity, %s FROM alerts "
                "WHERE alert_id = %s",
                (T0 + timedelta(hours=1), alert_id),
            )

        return add

    with conn.transaction():
        script(OneByOne(conn), "one", due_action(conn))
    with conn.transaction():
        w = AlertWrites(conn, actor="engine")
        script(w, "batch", due_action(conn))
    one, batch = state(conn, "one"), state(conn, "batch")
    assert len(one) == 3
    assert [e[1] for e in one[0][-2]][:3] == ["opened", "confirmed", "severity_raised"]
    assert batch == one


def test_changes_to_different_alerts_share_their_statements(conn: psycopg.Connection) -> None:
    with conn.transaction():
        w = AlertWrites(conn, actor="engine")
        ids = [w.new_alert_id() for _ in range(40)]
        for n, alert_id in enumerate(ids):
            w.insert(alert_id, new("batch", f"threshold:m{n}:low", T0))
        w.flush()
        assert w.statements == 3 + 2  # ids in blocks of 16; the alerts, their events
        for alert_id in ids:
            w.mark_cleared(alert_id, "o1", T0 + timedelta(minutes=1))
        w.flush()
    assert w.statements == 5 + 2  # the updates, their events
    assert conn.execute("SELECT count(*) FROM alert_events WHERE type = 'cleared'").fetchone()[0] == 40

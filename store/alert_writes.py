"""The alert engine's lifecycle writes of one transaction, sent a few statements at a time.

The same rows and events as ``store.alerts`` writes one statement at a time (``insert_alert``,
``apply_trigger``, ``mark_cleared``, ``resolve_alert``), collected and written with one
``unnest`` statement per kind of change. Nothing else changes: the writes run in the caller's
transaction (the engine's page, which also moves the watermark), so a rollback still takes all of
them.

Order: the changes are written in *rounds*, each holding at most one change per alert: an
alert's n-th change goes to the round after its (n-1)-th, and a new alert to the round of the
latest resolution made before it, or later (so a rule resolved and opened again keeps
``alerts_one_open_per_rule``: within a round the resolutions go first). Then come the other
updates, the new alerts, and last the round's events in the order they were made, each after its
alert's row has changed (the ``alert_events`` notify trigger reads the row). Every alert therefore
goes through the same states and gets the same events, in the same order, as with the
one-statement functions; the number of rounds is the most changes any one alert had.

A new alert's id is taken from the ``alerts`` identity sequence when the change is made (in blocks,
so one round trip serves many alerts): the engine needs it at once. Ids reserved and not used leave
a gap in the numbering, as a rolled-back insert does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from psycopg.types.json import Jsonb

from store.alerts import NewAlert, Trigger
from store.connection import Connection

__all__ = ["AlertWrites"]

_ID_BLOCK: Final = 16
_T = TypeVar("_T")
# (alert_id, org_id, at, type, actor, note, data), as alert_events holds it.
_Event = tuple[int, str, datetime, str, str, str | None, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Cleared:
    alert_id: int
    org_id: str
    since: datetime


@dataclass(frozen=True, slots=True)
class _Resolved:
    alert_id: int
    org_id: str
    at: datetime
    by: str
    resolution: str
    note: str | None
    data: dict[str, Any]


@dataclass(slots=True)
class _Round:
    inserts: list[tuple[int, NewAlert]] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    cleared: list[_Cleared] = field(default_factory=list)
    resolved: list[_Resolved] = field(default_factory=list)
    # A cleared alert's event is written only if its row changed.
    events: list[_Event | _Cleared] = field(default_factory=list)


class AlertWrites:
    def __init__(self, conn: Connection, *, actor: str) -> None:
        self._conn = conn
        self._actor = actor
        self._ids: list[int] = []
        self._rounds: list[_Round] = []
        self._next: dict[int, int] = {}  # alert -> the round its next change goes to
        self._resolved = 0  # the round of the latest resolution
        self.statements = 0  # sent, for the engine's figures

    def new_alert_id(self) -> int:
        if not self._ids:
            rows = self._conn.execute(
                "SELECT nextval(pg_get_serial_sequence('alerts', 'alert_id')) FROM generate_series(1, %s)",
                (_ID_BLOCK,),
            ).fetchall()
            self.statements += 1
            self._ids = sorted((int(r[0]) for r in rows), reverse=True)
        return self._ids.pop()

    def insert(self, alert_id: int, a: NewAlert) -> None:
        """As ``store.alerts.insert_alert``, with an id from :meth:`new_alert_id`."""
        r = self._for(alert_id, self._resolved)
        r.inserts.append((alert_id, a))
        opened: dict[str, Any] = {"severity": a.severity, "rule": a.rule}
        if a.unconfirmed:
            opened["unconfirmed"] = True
        r.events.append((alert_id, a.org_id, a.opened_at, "opened", self._actor, None, opened))

    def trigger(self, t: Trigger) -> None:
        """As ``store.alerts.apply_trigger``."""
        r = self._for(t.alert_id)
        r.triggers.append(t)
        change = {"from": t.previous_severity, "to": t.severity, **t.data}
        kinds = [
            ("confirmed", t.confirms),
            ("severity_raised", t.raised),
            ("reopened", t.reopened),
            ("unsnoozed", t.unsnoozed),
            ("retriggered", t.was_cleared and not t.raised and not t.confirms),
        ]
        r.events.extend((t.alert_id, t.org_id, t.at, kind, self._actor, None, change) for kind, made in kinds if made)

    def mark_cleared(self, alert_id: int, org_id: str, since: datetime) -> None:
        """As ``store.alerts.mark_cleared``: the event only when the alert was not cleared yet."""
        r = self._for(alert_id)
        c = _Cleared(alert_id, org_id, since)
        r.cleared.append(c)
        r.events.append(c)

    def resolve(
        self,
        alert_id: int,
        org_id: str,
        at: datetime,
        *,
        by: str,
        resolution: str,
        note: str | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """As ``store.alerts.resolve_alert`` (due escalation actions canceled)."""
        r = self._for(alert_id)
        self._resolved = max(self._resolved, self._next[alert_id] - 1)
        r.resolved.append(_Resolved(alert_id, org_id, at, by, resolution, note, data or {}))
        kind = "auto_resolved" if resolution == "auto" else "resolved"
        r.events.append((alert_id, org_id, at, kind, by, note, data or {}))

    def flush(self) -> None:
        """Write everything collected so far."""
        if self._rounds:
            # Pipelined: the statements go out without waiting for each result (a round that
            # clears alerts waits for which rows changed before its events).
            with self._conn.pipeline():
                for r in self._rounds:
                    self._write(r)
        self._rounds, self._next, self._resolved = [], {}, 0

    # -- rounds ------------------------------------------------------------------------------------

    def _for(self, alert_id: int, earliest: int = 0) -> _Round:
        n = max(self._next.get(alert_id, 0), earliest)
        self._next[alert_id] = n + 1
        while len(self._rounds) <= n:
            self._rounds.append(_Round())
        return self._rounds[n]

    def _execute(self, query: str, columns: Sequence[Any]) -> Any:
        self.statements += 1
        return self._conn.execute(query, columns)

    def _write(self, r: _Round) -> None:
        if r.resolved:
            self._resolve(r.resolved)
        changed: set[int] = set()
        if r.cleared:
            changed = self._clear(r.cleared)
        if r.triggers:
            self._trigger(r.triggers)
        if r.inserts:
            self._insert(r.inserts)
        events = [
            (e.alert_id, e.org_id, e.since, "cleared", self._actor, None, {}) if isinstance(e, _Cleared) else e
            for e in r.events
            if not isinstance(e, _Cleared) or e.alert_id in changed
        ]
        if events:
            self._events(events)

    def _resolve(self, rs: list[_Resolved]) -> None:
        cols = _columns(rs, lambda x: (x.alert_id, x.at, x.by, x.resolution, x.note))
        self._execute(
            "UPDATE alerts AS a SET state = 'resolved', resolved_at = t.at, resolved_by = t.by, "
            "resolution = t.resolution, resolution_note = t.note, updated_at = t.at, esc_next_at = NULL "
            "FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]) "
            "AS t(id, at, by, resolution, note) WHERE a.alert_id = t.id",
            cols,
        )
        self._execute(
            "UPDATE alert_actions AS x SET status = 'canceled', done_at = t.at "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS t(id, at) WHERE x.alert_id = t.id AND x.status = 'due'",
            cols[:2],
        )

    def _clear(self, cs: list[_Cleared]) -> set[int]:
        rows = self._execute(
            "UPDATE alerts AS a SET cleared_since = t.since, updated_at = t.since "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS t(id, since) "
            "WHERE a.alert_id = t.id AND a.cleared_since IS NULL RETURNING a.alert_id",
            _columns(cs, lambda c: (c.alert_id, c.since)),
        ).fetchall()
        return {int(row[0]) for row in rows}

    def _trigger(self, ts: list[Trigger]) -> None:
        self._execute(
            "UPDATE alerts AS a SET last_triggered_at = t.at, updated_at = t.at, cleared_since = NULL, "
            "severity = t.severity, "
            "summary = CASE WHEN t.upd THEN t.summary ELSE a.summary END, "
            "evidence = CASE WHEN t.upd THEN t.evidence ELSE a.evidence END, "
            "detail = CASE WHEN t.upd THEN t.detail ELSE a.detail END, "
            "state = CASE WHEN t.reopened THEN 'open' ELSE a.state END, "
            "snoozed_until = CASE WHEN t.unsnoozed THEN NULL ELSE a.snoozed_until END, "
            "unconfirmed = CASE WHEN t.confirms THEN false ELSE a.unconfirmed END, "
            "esc_severity = CASE WHEN t.restart THEN t.severity ELSE a.esc_severity END, "
            "esc_round = CASE WHEN t.restart THEN a.esc_round + 1 ELSE a.esc_round END, "
            "esc_started_at = CASE WHEN t.restart THEN t.at ELSE a.esc_started_at END, "
            "esc_step = CASE WHEN t.restart THEN 0 ELSE a.esc_step END, "
            "esc_next_at = CASE WHEN t.restart THEN t.next ELSE a.esc_next_at END "
            "FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::bool[], %s::text[], %s::jsonb[], "
            "%s::jsonb[], %s::bool[], %s::bool[], %s::bool[], %s::bool[], %s::timestamptz[]) "
            "AS t(id, at, severity, upd, summary, evidence, detail, reopened, unsnoozed, confirms, restart, next) "
            "WHERE a.alert_id = t.id",
            _columns(
                ts,
                lambda t: (
                    t.alert_id,
                    t.at,
                    t.severity,
                    t.update_evidence,
                    t.summary,
                    Jsonb(t.evidence),
                    Jsonb(t.detail),
                    t.reopened,
                    t.unsnoozed,
                    t.confirms,
                    t.restart_walk,
                    t.esc_next_at,
                ),
            ),
        )

    def _insert(self, inserts: list[tuple[int, NewAlert]]) -> None:
        self._execute(
            "INSERT INTO alerts (alert_id, org_id, patient_id, rule, kind, metric, severity, summary, evidence, "
            "detail, opened_at, updated_at, last_triggered_at, esc_severity, esc_round, esc_started_at, esc_step, "
            "esc_next_at, unconfirmed) OVERRIDING SYSTEM VALUE "
            "SELECT id, org, patient, rule, kind, metric, severity, summary, evidence, detail, at, at, at, severity, "
            "1, at, 0, next, unconfirmed "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
            "%s::text[], %s::jsonb[], %s::jsonb[], %s::timestamptz[], %s::timestamptz[], %s::bool[]) "
            "WITH ORDINALITY AS t(id, org, patient, rule, kind, metric, severity, summary, evidence, detail, at, "
            "next, unconfirmed, n) ORDER BY n",
            _columns(
                inserts,
                lambda x: (
                    x[0],
                    x[1].org_id,
                    x[1].patient_id,
                    x[1].rule,
                    x[1].kind,
                    x[1].metric,
                    x[1].severity,
                    x[1].summary,
                    Jsonb(x[1].evidence),
                    Jsonb(x[1].detail),
                    x[1].opened_at,
                    x[1].esc_next_at,
                    x[1].unconfirmed,
                ),
            ),
        )

    def _events(self, events: list[_Event]) -> None:
        self._execute(
            "INSERT INTO alert_events (alert_id, org_id, at, type, actor, note, data) "
            "SELECT id, org, at, type, actor, note, data FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], "
            "%s::text[], %s::text[], %s::text[], %s::jsonb[]) "
            "WITH ORDINALITY AS t(id, org, at, type, actor, note, data, n) ORDER BY n",
            _columns(events, lambda e: (*e[:6], Jsonb(e[6]))),
        )


def _columns(items: Sequence[_T], row: Callable[[_T], tuple[Any, ...]]) -> list[list[Any]]:
    """Rows to the column arrays an ``unnest`` takes."""
    return [list(col) for col in zip(*(row(x) for x in items), strict=True)]

"""Replay: what would have fired. Readings in time order through the engine's rules, in memory.

The replay shares everything with the engine except storage: the same evaluator, the same pure
lifecycle decisions (``alerts.lifecycle``), the same anomaly training. Time is a
:class:`~rpm_core.clock.ManualClock` set to each reading's time; between readings it advances in
``tick`` steps and the time-based rules (missing data, auto-resolution) run at every step, as the
engine's schedule would. Anomaly models are retrained every ``retrain_h`` of replay time on readings
strictly earlier than the reading being evaluated. Readings with the same patient and time are
evaluated together (a cuff sends systolic, diastolic and pulse at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from alerts.anomaly.features import FeatureLog
from alerts.anomaly.methods import BaselineModel, train_model
from alerts.config import PatientConfig, RulesConfig
from alerts.errors import AlertsConfigError
from alerts.evaluator import evaluate_readings, evaluate_schedule, schedule_lookback
from alerts.history import History
from alerts.lifecycle import AlertView, AutoResolve, MarkCleared, Open, Retrigger, State, due_auto_resolves, reconcile
from alerts.model import Candidate, Obs, Outcome, evidence_json
from alerts.replay_csv import ReplayReading
from rpm_core.clock import ManualClock

__all__ = ["OpenedAlert", "Replayer"]


@dataclass(frozen=True, slots=True)
class OpenedAlert:
    alert_id: int
    patient_id: str
    candidate: Candidate
    opened_at: datetime

    def to_json(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "alert_id": self.alert_id,
            "patient_id": self.patient_id,
            "kind": c.kind.value,
            "rule": c.rule,
            "metric": c.metric,
            "severity": c.severity.label,
            "unconfirmed": c.unconfirmed,
            "opened_at": self.opened_at.isoformat(),
            "summary": c.summary,
            "evidence": evidence_json(c.evidence),
            "detail": dict(c.detail),
        }


@dataclass
class _Patient:
    config: PatientConfig
    history: History = field(default_factory=History)
    features: FeatureLog = field(default_factory=FeatureLog)
    alerts: dict[str, AlertView] = field(default_factory=dict)
    model: BaselineModel | None = None
    next_training: datetime | None = None
    schedule_due: datetime | None = None  # when missing data may next change
    dirty: bool = True  # readings arrived since the last scheduled evaluation


class Replayer:
    """Feed readings in time order; ``on_open`` receives every alert opened, as it opens."""

    def __init__(
        self,
        rules: RulesConfig,
        *,
        patient_settings: Mapping[str, Mapping[str, Any]] | None = None,
        anomaly: bool = True,
        anomaly_method: str | None = None,
        tick: timedelta = timedelta(hours=1),
        on_open: Callable[[OpenedAlert], None] | None = None,
    ) -> None:
        if tick <= timedelta(0):
            raise AlertsConfigError("tick must be positive")
        self.rules = rules
        self.anomaly = anomaly and rules.anomaly.enabled
        self.anomaly_method = anomaly_method
        self.tick = tick
        self.on_open = on_open
        self.opened: list[OpenedAlert] = []
        # Unconfirmed alerts: when a repeat confirmed them, and those a normal repeat refuted.
        self.confirmed_at: dict[int, datetime] = {}
        self.refuted: set[int] = set()
        self.readings = 0
        self.on_progress: Callable[[int], None] | None = None
        self.progress_every = 10_000
        self._settings = patient_settings or {}
        self._patients: dict[str, _Patient] = {}
        self._clock: ManualClock | None = None
        self._next_tick: datetime | None = None
        self._next_id = 1
        self._next_prune: datetime | None = None
        self._keep = max(
            timedelta(days=rules.anomaly.train_days + rules.anomaly.guard_days + 4), schedule_lookback(rules)
        )

    def run(self, readings: Iterable[ReplayReading]) -> Iterator[OpenedAlert]:
        """Replay ``readings`` (already in time order) and yield alerts as they open."""
        for (when, pid), group in groupby(readings, key=lambda r: (r.time, r.patient_id)):
            before, count = len(self.opened), self.readings
            self.feed(pid, when, list(group))
            if self.on_progress is not None and count // self.progress_every != self.readings // self.progress_every:
                self.on_progress(self.readings)
            yield from self.opened[before:]

    def feed(self, patient_id: str, at: datetime, group: list[ReplayReading]) -> None:
        if self._clock is None:
            self._clock = ManualClock(at)
            self._next_tick = at + self.tick
        self._advance(self._clock, at)
        p = self._patient(patient_id)
        self._maybe_train(p, at)
        for r in group:
            p.history.add(Obs(r.time, r.metric, r.value))
        self.readings += len(group)
        p.dirty = True
        arrived = frozenset(r.metric for r in group)
        outcome = evaluate_readings(p.history, at, arrived, p.config, p.model)
        if self.anomaly and p.config.anomaly:
            p.features.record(p.history, at, arrived)
        self._apply(patient_id, p, outcome, at)

    # -- time passing ------------------------------------------------------------------------

    def _advance(self, clock: ManualClock, to: datetime) -> None:
        tick = self._next_tick or to + self.tick
        while tick <= to:
            clock.set(tick)
            self._scheduled(tick)
            tick += self.tick
        self._next_tick = tick
        clock.set(to)

    def _scheduled(self, now: datetime) -> None:
        for pid, p in self._patients.items():
            if p.dirty or (p.schedule_due is not None and now >= p.schedule_due):
                outcome, status = evaluate_schedule(p.history, now, p.config)
                p.schedule_due, p.dirty = status.next_due, False
                self._apply(pid, p, outcome, now)
            elif any(a.cleared_since is not None for a in p.alerts.values()):
                self._auto_resolve(p, now)
        if self._next_prune is None or now >= self._next_prune:
            for p in self._patients.values():
                p.history.prune(now - self._keep)
                p.features.prune(now - self._keep)
            self._next_prune = now + timedelta(days=1)

    # -- per patient ---------------------------------------------------------------------------

    def _patient(self, patient_id: str) -> _Patient:
        p = self._patients.get(patient_id)
        if p is None:
            config = PatientConfig.resolve(self.rules, self._settings.get(patient_id))
            p = self._patients[patient_id] = _Patient(config)
        return p

    def _maybe_train(self, p: _Patient, at: datetime) -> None:
        if not self.anomaly or not p.config.anomaly:
            return
        if p.next_training is not None and at < p.next_training:
            return
        p.model = train_model(p.features, at, self.rules.anomaly, self.anomaly_method) or p.model
        p.next_training = at + timedelta(hours=self.rules.anomaly.retrain_h)

    def _apply(self, patient_id: str, p: _Patient, outcome: Outcome, now: datetime) -> None:
        for d in reconcile(p.alerts, outcome, now):
            if isinstance(d, Open):
                c = d.candidate
                view = AlertView(
                    self._next_id, c.rule, c.kind.value, c.severity, State.OPEN, now, unconfirmed=c.unconfirmed
                )
                p.alerts[c.rule] = view
                alert = OpenedAlert(self._next_id, patient_id, c, now)
                self._next_id += 1
                self.opened.append(alert)
                if self.on_open is not None:
                    self.on_open(alert)
            elif isinstance(d, Retrigger):
                a = p.alerts[d.candidate.rule]
                p.alerts[a.rule] = replace(
                    a,
                    severity=d.severity,
                    state=State.OPEN if d.reopened else a.state,
                    cleared_since=None,
                    unconfirmed=a.unconfirmed and not d.confirms,
                )
                if d.confirms:
                    self.confirmed_at[a.alert_id] = now
            elif isinstance(d, MarkCleared):
                self._mark_cleared(p, d)
        self._auto_resolve(p, now)

    @staticmethod
    def _mark_cleared(p: _Patient, d: MarkCleared) -> None:
        for rule, a in p.alerts.items():
            if a.alert_id == d.alert_id:
                p.alerts[rule] = replace(a, cleared_since=d.since)
                return

    def _auto_resolve(self, p: _Patient, now: datetime) -> None:
        resolved: list[AutoResolve] = due_auto_resolves(p.alerts.values(), now, self.rules.lifecycle)
        done = {r.alert_id for r in resolved}
        self.refuted.update(r.alert_id for r in resolved if r.refuted)
        if done:
            p.alerts = {rule: a for rule, a in p.alerts.items() if a.alert_id not in done}

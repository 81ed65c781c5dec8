"""The engine's scheduled round: missing data, devices and agents, auto-resolution, baseline suggestions.

Missing data is re-evaluated for a patient when readings arrived since the last round, or when the
rule said its answer could change by now (``MissingDataStatus.next_due``), or after a restart
(nothing is known yet), or while the patient has a monitoring pause near now. Devices and
auto-resolution are checked for every owned patient: their inputs (agent status messages, the
passing of time) do not come through the readings feed.

Stored history arriving: while a patient's devices upload old readings (``store.alert_backfills``,
noted by the engine as it consumes them), or while some of the patient's stored readings are not
consumed yet, the missing-data rule is not evaluated for that patient —
the history it would judge is still on its way (a device uploading weeks of memory oldest first
would otherwise look silent since the last record delivered so far). The hold ends
``backfill_settle_min`` after the last old reading arrived, and never lasts longer than
``backfill_max_hold_h`` from the start of the upload (a device trickling old readings forever does
not switch the rule off; that is logged with the patient id and counted).

Monitoring pauses (``store.monitoring_pauses``) are passed to the missing-data rules: nothing is
missing while one is in force, and silence counts from its end.

Baseline suggestions: a threshold alert open at one severity for ``baseline.suggest_after_days``,
still firing, gets an ``alert_events`` row ``baseline_suggested`` with the patient's usual value
(``baseline.quantile`` of the readings of those days on the rule's side), once per alert.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from alerts.book import ENGINE_ACTOR, AlertBook
from alerts.config import PatientConfig, RulesConfig
from alerts.evaluator import schedule_lookback
from alerts.history import History
from alerts.lifecycle import reconcile
from alerts.model import Obs, Outcome, merge_outcomes
from alerts.rules.missing_data import DeviceState, evaluate_devices, missing_data_status
from rpm_core.metrics import METRIC_NAMES
from store import alert_backfills, monitoring_pauses, patient_baselines
from store import alerts as alert_store
from store import devices as device_store
from store import patients as patient_store
from store import readings as reading_store
from store.connection import Connection

__all__ = ["ScheduledRound"]

log = logging.getLogger(__name__)
_CHUNK: Final = 200


class ScheduledRound:
    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules
        self._dirty: set[str] = set()
        self._next_due: dict[str, datetime | None] = {}
        self._expired_logged: dict[str, datetime] = {}
        self.backfill_holds = 0  # missing-data evaluations held while history was arriving
        self.backfill_holds_expired = 0  # uploads still trickling after backfill_max_hold_h
        self.baselines_suggested = 0

    def touch(self, patient_id: str) -> None:
        """Readings of this patient arrived: re-evaluate missing data at the next round."""
        self._dirty.add(patient_id)

    def _due(self, patient_id: str, now: datetime) -> bool:
        if patient_id in self._dirty or patient_id not in self._next_due:
            return True
        due = self._next_due[patient_id]
        return due is not None and now >= due

    def run(
        self,
        conn: Connection,
        patients: Sequence[patient_store.PatientRow],
        configs: Mapping[str, PatientConfig],
        now: datetime,
        *,
        consumed_below: int | None = None,
    ) -> None:
        """One round; ``consumed_below``: the lowest feed watermark of the patients' partitions (a
        patient with readings at or above it is not judged on missing data until they are consumed)."""
        for i in range(0, len(patients), _CHUNK):
            with conn.transaction():
                self._chunk(conn, patients[i : i + _CHUNK], configs, now, consumed_below)

    def _held(self, backfill: alert_backfills.Backfill | None, now: datetime) -> bool:
        """Whether missing data waits for this patient's stored history to finish arriving."""
        cfg = self.rules.missing_data
        if backfill is None or now - backfill.seen_at >= timedelta(minutes=cfg.backfill_settle_min):
            return False
        if now - backfill.started_at < timedelta(hours=cfg.backfill_max_hold_h):
            return True
        if self._expired_logged.get(backfill.patient_id) != backfill.started_at:
            self._expired_logged[backfill.patient_id] = backfill.started_at
            self.backfill_holds_expired += 1
            log.warning(
                "patient %s: old readings still arriving %.1f h after the upload began (%d so far); "
                "judging missing data anyway",
                backfill.patient_id,
                (now - backfill.started_at) / timedelta(hours=1),
                backfill.readings,
            )
        return False

    def _chunk(
        self,
        conn: Connection,
        chunk: Sequence[patient_store.PatientRow],
        configs: Mapping[str, PatientConfig],
        now: datetime,
        consumed_below: int | None,
    ) -> None:
        ids = [p.patient_id for p in chunk]
        book = AlertBook(conn, ids, self.rules.lifecycle)
        start = now - schedule_lookback(self.rules)
        pauses = monitoring_pauses.overlapping_pauses(conn, ids, start, now + timedelta(seconds=1))
        backfills = alert_backfills.backfills_of(conn, ids)
        held = {pid for pid in ids if self._held(backfills.get(pid), now)}
        self.backfill_holds += len(held)
        if consumed_below is not None:
            # Stored but not consumed yet: old ones among them would only be noted once they are.
            held |= alert_backfills.unconsumed_patients(conn, ids, consumed_below)
        due = [
            p for p in chunk if p.patient_id not in held and (self._due(p.patient_id, now) or p.patient_id in pauses)
        ]
        histories: dict[str, History] = {p.patient_id: History() for p in due}
        windows = [(p.org_id, p.patient_id, start, now) for p in due]
        for w in reading_store.readings_windows(conn, windows, sorted(METRIC_NAMES), per_metric_limit=500):
            histories[w.patient_id].add(Obs(w.time, w.metric, w.value))
        devices: dict[str, list[DeviceState]] = defaultdict(list)
        for d in device_store.devices_of(conn, ids):
            state = DeviceState("agent" if d.kind == "agent" else "device", d.id, d.last_seen, d.battery_pct)
            devices[d.patient_id].append(state)
        for p in chunk:
            config = configs[p.patient_id]
            paused = pauses.get(p.patient_id, [])
            outcomes: list[Outcome] = [evaluate_devices(devices[p.patient_id], now, config, paused)]
            if p.patient_id in histories:
                status = missing_data_status(histories[p.patient_id], now, config, paused)
                outcomes.append(status.outcome)
                self._next_due[p.patient_id] = status.next_due
                self._dirty.discard(p.patient_id)
            decisions = reconcile(book.unresolved(p.patient_id), merge_outcomes(outcomes), now)
            book.apply(p.org_id, p.patient_id, decisions, now)
        self._suggest_baselines(conn, ids, now)

    def _suggest_baselines(self, conn: Connection, patient_ids: Sequence[str], now: datetime) -> None:
        cfg = self.rules.baseline
        days = timedelta(days=cfg.suggest_after_days)
        for a in patient_baselines.stable_alerts(conn, patient_ids, now - days):
            if a.metric is None:
                continue
            low = a.rule.endswith(":low")
            quantile = cfg.quantile if low else 1 - cfg.quantile
            usual = patient_baselines.usual_value(conn, a.org_id, a.patient_id, a.metric, now - days, now, quantile)
            if usual is None:
                continue
            value, n = usual
            alert_store.add_event(
                conn,
                a.alert_id,
                a.org_id,
                now,
                "baseline_suggested",
                ENGINE_ACTOR,
                note=f"open {cfg.suggest_after_days:g} days at one severity: accept the patient's baseline?",
                data={
                    "rule": a.rule,
                    "metric": a.metric,
                    "value": round(value, 1),
                    "quantile": quantile,
                    "days": cfg.suggest_after_days,
                    "readings": n,
                },
            )
            self.baselines_suggested += 1

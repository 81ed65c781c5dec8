"""The engine's scheduled round: missing data, devices and agents, auto-resolution.

Missing data is re-evaluated for a patient when readings arrived since the last round, or when the
rule said its answer could change by now (``MissingDataStatus.next_due``), or after a restart
(nothing is known yet). Devices and auto-resolution are checked for every owned patient: their
inputs (agent status messages, the passing of time) do not come through the readings feed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from alerts.book import AlertBook
from alerts.config import PatientConfig, RulesConfig
from alerts.evaluator import schedule_lookback
from alerts.history import History
from alerts.lifecycle import reconcile
from alerts.model import Obs, Outcome, merge_outcomes
from alerts.rules.missing_data import DeviceState, evaluate_devices, missing_data_status
from rpm_core.metrics import METRIC_NAMES
from store import alert_engine as engine_store
from store.connection import Connection

__all__ = ["ScheduledRound"]

_CHUNK: Final = 200


class ScheduledRound:
    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules
        self._dirty: set[str] = set()
        self._next_due: dict[str, datetime | None] = {}

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
        patients: Sequence[engine_store.PatientRow],
        configs: Mapping[str, PatientConfig],
        now: datetime,
    ) -> None:
        for i in range(0, len(patients), _CHUNK):
            with conn.transaction():
                self._chunk(conn, patients[i : i + _CHUNK], configs, now)

    def _chunk(
        self,
        conn: Connection,
        chunk: Sequence[engine_store.PatientRow],
        configs: Mapping[str, PatientConfig],
        now: datetime,
    ) -> None:
        ids = [p.patient_id for p in chunk]
        book = AlertBook(conn, ids, self.rules.lifecycle)
        due = [p for p in chunk if self._due(p.patient_id, now)]
        start = now - schedule_lookback(self.rules)
        histories: dict[str, History] = {p.patient_id: History() for p in due}
        windows = [(p.org_id, p.patient_id, start, now) for p in due]
        for w in engine_store.readings_windows(conn, windows, sorted(METRIC_NAMES), per_metric_limit=500):
            histories[w.patient_id].add(Obs(w.time, w.metric, w.value))
        devices: dict[str, list[DeviceState]] = defaultdict(list)
        for d in engine_store.devices_of(conn, ids):
            state = DeviceState("agent" if d.kind == "agent" else "device", d.id, d.last_seen, d.battery_pct)
            devices[d.patient_id].append(state)
        for p in chunk:
            config = configs[p.patient_id]
            outcomes: list[Outcome] = [evaluate_devices(devices[p.patient_id], now, config)]
            if p.patient_id in histories:
                status = missing_data_status(histories[p.patient_id], now, config)
                outcomes.append(status.outcome)
                self._next_due[p.patient_id] = status.next_due
                self._dirty.discard(p.patient_id)
            decisions = reconcile(book.unresolved(p.patient_id), merge_outcomes(outcomes), now)
            book.apply(p.org_id, p.patient_id, decisions, now)

"""The alert engine (``vigil alerts run``): new readings in, alerts out, exactly once.

Loop: take a fair share of the patient partitions (advisory locks, :mod:`alerts.partitions`);
consume the readings feed (``store.feed``) from the owned partitions' watermarks in pages; for
each page, evaluate every patient's new readings in time order and write the resulting lifecycle
decisions **and** the advanced watermarks in one transaction — a crash (kill -9) anywhere rolls
back both, so a restart neither skips nor repeats. When caught up, wait for ingest's NOTIFY on
``vigil_readings`` (or the poll interval, the fallback if a notification is lost); after a
notification, look again every 0.1 s for a few seconds, as the readings it announces may still be
behind the feed horizon. On the schedule:
missing data and devices, auto-resolution, anomaly model retraining. Escalation walks advance on
every round (:mod:`alerts.escalation`).

Logs carry ids and counts only.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Final

from alerts.anomaly.methods import BaselineModel
from alerts.book import AlertBook
from alerts.config import PatientConfig
from alerts.errors import AlertsConfigError
from alerts.escalation import EscalationSink, run_escalations
from alerts.evaluator import evaluate_readings, reading_lookback
from alerts.history import History
from alerts.history_cache import HistoryCache
from alerts.lifecycle import reconcile
from alerts.model import Obs
from alerts.models_store import ModelTrainer
from alerts.partitions import partition_of, plan_rebalance, target_share
from alerts.scheduled import ScheduledRound
from alerts.settings import AlertsSettings
from rpm_core.backoff import BackoffPolicy, backoff_delay
from rpm_core.clock import Clock
from rpm_core.metrics import METRIC_NAMES
from store import alert_backfills, patient_baselines, summaries
from store import partitions as partition_store
from store import patients as patient_store
from store import readings as reading_store
from store.connection import Connection, connect, listen, translate_errors, wait_for_notification
from store.errors import DatabaseUnavailable
from store.feed import readings_since
from store.readings import ReadingRow

__all__ = ["Engine", "EngineStats"]

log = logging.getLogger(__name__)
_RECONNECT: Final = BackoffPolicy(base_s=0.2, factor=2.0, cap_s=10.0)
# After a NOTIFY the committed readings may still sit behind the feed horizon (another transaction
# anywhere on the server is older): look again every step for a while before sleeping on LISTEN.
_NOTIFY_GRACE_S: Final = 5.0
_HURRY_STEP_S: Final = 0.1
# Readings the per-patient history cache may hold (about 150 bytes each, so about 150 MB): beyond
# it, the least recently evaluated patients are reloaded from the database when next needed.
_HISTORY_CACHE_READINGS: Final = 1_000_000


@dataclass
class EngineStats:
    readings_seen: int = 0
    readings_evaluated: int = 0
    readings_stale: int = 0
    backfill_patients_noted: int = 0
    pages: int = 0
    histories_loaded: int = 0
    alerts_opened: int = 0
    actions_taken: int = 0
    scheduled_rounds: int = 0


class Engine:
    def __init__(
        self,
        settings: AlertsSettings,
        *,
        clock: Clock,
        sink: EscalationSink,
        stop: threading.Event | None = None,
        application_name: str = "vigil-alerts",
    ) -> None:
        self.settings = settings
        self.rules = settings.alerts_rules
        self.clock = clock
        self.sink = sink
        self.stop = stop or threading.Event()
        self.stats = EngineStats()
        self.owned: set[int] = set()
        self._app = application_name
        self._conn: Connection | None = None
        self._next_rebalance = 0.0
        self._next_schedule = 0.0
        self.models = ModelTrainer(self.rules)
        self._configs: dict[str, PatientConfig] = {}
        self.schedule = ScheduledRound(self.rules)
        self.histories = HistoryCache(max_readings=_HISTORY_CACHE_READINGS)

    # -- process lifecycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until :attr:`stop` is set, reconnecting (with backoff) whenever the database goes away."""
        attempt = 0
        while not self.stop.is_set():
            try:
                conn = self.connect()
                attempt = 0
                hurry_until = 0.0
                while not self.stop.is_set():
                    if self.run_once():
                        continue
                    if time.monotonic() < hurry_until:
                        self.stop.wait(_HURRY_STEP_S)
                    elif self._wait(conn):
                        hurry_until = time.monotonic() + _NOTIFY_GRACE_S
            except DatabaseUnavailable as exc:
                delay = backoff_delay(exc, attempt, policy=_RECONNECT, jitter=random.random() * 0.5)  # noqa: S311
                log.warning("database unavailable (%s); reconnecting in %.1f s", exc.reason, delay)
                attempt += 1
                self.close()
                self.stop.wait(delay)
        self.close()

    def _wait(self, conn: Connection) -> bool:
        """Until a NOTIFY arrives (True), the poll interval passes or we are told to stop (checked
        each second)."""
        deadline = time.monotonic() + self.settings.alerts_poll_interval_s
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if wait_for_notification(conn, min(left, 1.0)):
                return True
        return False

    def connect(self) -> Connection:
        self.close()
        conn = connect(self.settings.database_url, application_name=self._app)
        with translate_errors():
            listen(conn, self.settings.alerts_channel)
            partition_store.register_worker(conn)
        self._conn = conn
        self.owned = set()
        self._next_rebalance = self._next_schedule = 0.0
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self.owned = set()
        self.histories.clear()
        if conn is not None and not conn.closed:
            conn.close()  # releases the session's advisory locks

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise DatabaseUnavailable("not connected")
        return self._conn

    # -- one round ---------------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Rebalance, consume everything available, run the schedule when due, advance escalations.
        Returns whether any reading was consumed (False: caught up, time to wait)."""
        with translate_errors():
            mono = self.clock.monotonic()
            if mono >= self._next_rebalance:
                self.rebalance()
                self._next_rebalance = mono + self.settings.alerts_rebalance_interval_s
            consumed = self.consume()
            if consumed:
                # Keep the clinician panel's summaries current (one advancer at a time; the panel
                # catches up itself too, so this only keeps its catch-up small).
                summaries.advance(self.conn)
            if mono >= self._next_schedule:
                self.scheduled(self.clock.now())
                self._next_schedule = mono + self.settings.alerts_schedule_interval_s
            self.stats.actions_taken += run_escalations(self.conn, self.clock.now(), self.sink)
            return consumed > 0

    def rebalance(self) -> None:
        conn, count = self.conn, self.settings.alerts_partitions
        locks = partition_store.partition_locks(conn)
        me = conn.info.backend_pid
        others = [p for p, pid in locks.items() if pid != me]
        share = target_share(count, partition_store.live_workers(conn), me)
        release, take = plan_rebalance(count, self.owned, others, share)
        for p in release:
            partition_store.unlock_partition(conn, p)
            self.owned.discard(p)
        taken = [p for p in take if partition_store.try_lock_partition(conn, p)]
        if taken:
            partition_store.ensure_watermarks(conn, count, taken)
            self.owned.update(taken)
        if release or taken:
            log.info("alert partitions: own %d of %d", len(self.owned), count)

    def consume(self) -> int:
        """Consume pages until the feed is caught up; return this worker's readings evaluated or skipped."""
        total = 0
        while self.owned and not self.stop.is_set():
            mine, more = self.consume_page()
            total += mine
            if not more:
                break
        return total

    def consume_page(self) -> tuple[int, bool]:
        """One page in one transaction: evaluate, apply, move the watermarks.

        Returns (readings of the owned partitions, whether the page held any reading at all). An
        empty page writes nothing: an idle engine does not burn a transaction id per poll.
        """
        conn, count = self.conn, self.settings.alerts_partitions
        with conn.transaction():
            # Read-only until the feed has taken its horizon (see store.partitions.load_watermarks).
            marks = partition_store.load_watermarks(conn, count, self.owned)
            self.histories.begin(marks)
            page = readings_since(conn, min(marks.values()), limit=self.settings.alerts_batch_limit)
            mine = [
                r
                for xid, rows in page.transactions
                for r in rows
                if (p := partition_of(r.patient_id, count)) in marks and xid >= marks[p]
            ]
            if mine:
                self._evaluate(conn, mine, self.clock.now(), page.watermark)
            moved = {p: max(w, page.watermark) for p, w in marks.items()}
            if page.transactions and moved != marks:
                partition_store.save_watermarks(conn, count, moved)
        # Only now do the cached histories (grown by this page) match the stored watermarks.
        self.histories.commit(moved)
        self.stats.pages += 1
        self.stats.readings_seen += len(mine)
        return len(mine), bool(page.transactions)

    def _evaluate(self, conn: Connection, readings: Sequence[ReadingRow], now: datetime, watermark: int) -> None:
        by_patient: dict[str, list[ReadingRow]] = defaultdict(list)
        for r in readings:
            by_patient[r.patient_id].append(r)
        profiles = {p.patient_id: p for p in patient_store.patients(conn, sorted(by_patient))}
        for pid in sorted(by_patient.keys() - profiles.keys()):
            log.warning("readings of unknown patient %s not evaluated", pid)
        baselines = patient_baselines.baselines_in_force(conn, sorted(profiles))
        configs = {pid: self.patient_config(pid, p.settings, baselines.get(pid)) for pid, p in profiles.items()}
        book = AlertBook(conn, sorted(profiles), self.rules.lifecycle, defer=True)
        models = self.models.load(conn, sorted(profiles)) if self.rules.anomaly.enabled else {}
        stale = timedelta(hours=self.settings.alerts_stale_after_h)
        histories = self._histories(
            conn, {pid: by_patient[pid] for pid in profiles}, configs, profiles, now - stale, watermark
        )
        backfilling: dict[str, tuple[str, int]] = {}
        for pid, rows in sorted(by_patient.items()):
            if pid not in profiles:
                continue
            # No history for a patient whose readings here are all stored history (nothing to evaluate).
            org, config, history = profiles[pid].org_id, configs[pid], histories.get(pid, History())
            model: BaselineModel | None = models.get(pid)
            for at, grouped in groupby(sorted(rows, key=lambda r: r.time), key=lambda r: r.time):
                group = list(grouped)
                if now - at > stale:
                    # Stored history arriving: history for later evaluations, and missing data waits
                    # until the upload has settled (alerts.scheduled).
                    self.stats.readings_stale += len(group)
                    backfilling[pid] = (org, backfilling.get(pid, (org, 0))[1] + len(group))
                    continue
                # A model trained after this reading was taken may have seen it: judge without it.
                usable = model if model is not None and model.trained_through <= at else None
                outcome = evaluate_readings(history, at, {r.metric for r in group}, config, usable)
                book.apply(org, pid, reconcile(book.unresolved(pid), outcome, now), now)
                self.stats.readings_evaluated += len(group)
            self.schedule.touch(pid)
        book.flush()
        settle = timedelta(minutes=self.rules.missing_data.backfill_settle_min)
        alert_backfills.note_backfills(conn, backfilling, now, gap=settle)
        self.stats.backfill_patients_noted += len(backfilling)
        self.stats.alerts_opened += len(book.opened)

    def _histories(
        self,
        conn: Connection,
        by_patient: dict[str, list[ReadingRow]],
        configs: dict[str, PatientConfig],
        profiles: dict[str, patient_store.PatientRow],
        fresh_from: datetime,
        watermark: int,
    ) -> dict[str, History]:
        """The history of each patient that has readings to evaluate (taken at or after
        ``fresh_from``): from the cache, grown by this page's readings, or loaded from the database
        as of the page's ``watermark`` (this page's readings included). Readings of patients with
        only stored history arriving grow their cached history, if any, and load nothing."""
        count = self.settings.alerts_partitions
        need: dict[str, datetime] = {}
        for pid, rows in by_patient.items():
            times = [r.time for r in rows if r.time >= fresh_from]
            if times:
                need[pid] = min(times) - reading_lookback(configs[pid])
        histories: dict[str, History] = {}
        load: list[tuple[str, str, datetime]] = []
        for pid, rows in by_patient.items():
            cached = self.histories.get(pid, need[pid]) if pid in need else None
            if cached is not None or pid not in need:
                self.histories.add(pid, [Obs(r.time, r.metric, r.value) for r in rows])
                if cached is not None:
                    histories[pid] = cached
            else:
                load.append((profiles[pid].org_id, pid, need[pid]))
        loaded: dict[str, list[Obs]] = {pid: [] for _, pid, _ in load}
        for w in reading_store.readings_since_time(conn, load, sorted(METRIC_NAMES), below_xid=watermark):
            loaded[w.patient_id].append(Obs(w.time, w.metric, w.value))
        for pid, obs in loaded.items():
            histories[pid] = history = History()
            history.extend(obs)
            self.histories.put(pid, partition_of(pid, count), history, need[pid])
        self.stats.histories_loaded += len(loaded)
        for pid, start in need.items():
            self.histories.trim(pid, start)
        self.histories.bound(keep=need)
        return histories

    def patient_config(
        self, patient_id: str, settings: dict[str, object], baselines: dict[str, float] | None = None
    ) -> PatientConfig:
        """The patient's rules (cached per distinct settings document and accepted baselines: most
        patients share one)."""
        key = json.dumps([settings, baselines or {}], sort_keys=True, default=str)
        config = self._configs.get(key)
        if config is None:
            try:
                config = PatientConfig.resolve(self.rules, settings, baselines)
            except AlertsConfigError as exc:
                log.warning("patient %s: %s; using the organisation defaults", patient_id, exc.why)
                config = PatientConfig.resolve(self.rules, None, baselines)
            if len(self._configs) > 10_000:
                self._configs.clear()
            self._configs[key] = config
        return config

    def scheduled(self, now: datetime) -> None:
        """Time-based rules, auto-resolution and model retraining for the owned partitions."""
        count = self.settings.alerts_partitions
        everyone = patient_store.patients(self.conn)
        mine = [p for p in everyone if partition_of(p.patient_id, count) in self.owned]
        baselines = patient_baselines.baselines_in_force(self.conn, [p.patient_id for p in mine])
        configs = {
            p.patient_id: self.patient_config(p.patient_id, p.settings, baselines.get(p.patient_id)) for p in mine
        }
        marks = partition_store.load_watermarks(self.conn, count, self.owned)
        self.schedule.run(self.conn, mine, configs, now, consumed_below=min(marks.values(), default=None))
        self.models.retrain_due(self.conn, mine, configs, now, limit=self.settings.alerts_retrain_per_tick)
        self.stats.scheduled_rounds += 1

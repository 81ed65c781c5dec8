"""Anomaly models in the engine: load the newest stored version, retrain on the schedule.

Loaded models are kept by ``model_id`` (a stored model never changes): each batch asks the database
only which model is the newest of each patient, and parses and builds only those not kept yet.

Each training reads the patient's readings of the training period (``train_days`` plus the guard)
from the database, computes the features (pandas), fits the configured method and stores a new
version with ``trained_through = now``: the model has seen no reading at or after that time. A
patient with too little history is not retried before the next retraining interval.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from alerts.anomaly.features import FEATURE_VERSION, FeatureLog
from alerts.anomaly.methods import BaselineModel, load_model, train_model
from alerts.config import PatientConfig, RulesConfig
from alerts.errors import ModelError
from alerts.history import History
from alerts.model import Obs
from rpm_core.metrics import METRIC_NAMES
from store import anomaly_models as model_store
from store import patients as patient_store
from store import readings as reading_store
from store.connection import Connection

__all__ = ["ModelTrainer"]

log = logging.getLogger(__name__)
_BEFORE: Final = timedelta(microseconds=1)
_FEATURE_WARMUP: Final = timedelta(days=4)
_KEPT_MODELS: Final = 100_000


class ModelTrainer:
    def __init__(self, rules: RulesConfig) -> None:
        self.config = rules.anomaly
        self._not_before: dict[str, datetime] = {}
        self._kept: dict[str, tuple[int, BaselineModel | None]] = {}  # patient -> (model_id, model)
        self.trained = 0

    def load(self, conn: Connection, patient_ids: Sequence[str]) -> dict[str, BaselineModel]:
        """The newest usable model of each patient (an unloadable one is logged and skipped)."""
        newest = model_store.latest_model_ids(conn, patient_ids, self.config.method)
        fresh = [mid for pid, mid in newest.items() if pid not in self._kept or self._kept[pid][0] != mid]
        if len(self._kept) + len(fresh) > _KEPT_MODELS:
            self._kept.clear()
            fresh = list(newest.values())
        for row in model_store.models_by_id(conn, fresh) if fresh else []:
            model: BaselineModel | None = None
            try:
                model = load_model(
                    row.method,
                    row.params,
                    feature_version=row.feature_version,
                    trained_through=row.trained_through,
                    n_observations=row.n_observations,
                )
            except ModelError as exc:
                log.warning("patient %s: anomaly model v%d not usable: %s", row.patient_id, row.version, exc.why)
            self._kept[row.patient_id] = (row.model_id, model)
        out: dict[str, BaselineModel] = {}
        for pid, mid in newest.items():
            kept_id, model = self._kept.get(pid, (None, None))
            if kept_id == mid and model is not None:
                out[pid] = model
        return out

    def retrain_due(
        self,
        conn: Connection,
        patients: Sequence[patient_store.PatientRow],
        configs: Mapping[str, PatientConfig],
        now: datetime,
        *,
        limit: int,
    ) -> int:
        """Retrain up to ``limit`` patients whose newest model is older than ``retrain_h``."""
        if not self.config.enabled or limit <= 0:
            return 0
        every = timedelta(hours=self.config.retrain_h)
        wanted = [
            p for p in patients if configs[p.patient_id].anomaly and self._not_before.get(p.patient_id, now) <= now
        ]
        latest = model_store.latest_models(conn, [p.patient_id for p in wanted], self.config.method)
        due = [p for p in wanted if p.patient_id not in latest or now - latest[p.patient_id].trained_at >= every]
        done = 0
        for p in due[:limit]:
            with conn.transaction():
                done += self.train(conn, p, now)
            self._not_before[p.patient_id] = now + every
        return done

    def train(self, conn: Connection, patient: patient_store.PatientRow, now: datetime) -> int:
        cfg = self.config
        start = now - timedelta(days=cfg.train_days + cfg.guard_days) - _FEATURE_WARMUP
        window = [(patient.org_id, patient.patient_id, start, now - _BEFORE)]
        rows = reading_store.readings_windows(conn, window, sorted(METRIC_NAMES), per_metric_limit=20_000)
        history = History(Obs(r.time, r.metric, r.value) for r in rows)
        model = train_model(FeatureLog.from_history(history), now, cfg)
        if model is None:
            return 0
        version = model_store.insert_model(
            conn,
            org_id=patient.org_id,
            patient_id=patient.patient_id,
            method=model.method,
            feature_version=FEATURE_VERSION,
            trained_at=now,
            trained_through=model.trained_through,
            n_observations=model.n_observations,
            params=model.params(),
        )
        log.debug("patient %s: anomaly model v%d trained", patient.patient_id, version)
        self.trained += 1
        return 1

"""The engine's anomaly models: the newest stored version of each patient, built once per version."""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
import pytest

from alerts.anomaly.features import FEATURE_VERSION
from alerts.anomaly.methods import RobustZModel
from alerts.config import RulesConfig
from alerts.models_store import ModelTrainer
from store import anomaly_models as model_store
from tests.alerts.conftest import add_patients
from tests.alerts.helpers import T0


def store_model(
    conn: psycopg.Connection, pid: str, days: int, *, center: float = 97.0, feature_version: int = 0
) -> int:
    return model_store.insert_model(
        conn,
        org_id="o1",
        patient_id=pid,
        method="robust_z",
        feature_version=feature_version or FEATURE_VERSION,
        trained_at=T0 + timedelta(days=days),
        trained_through=T0 + timedelta(days=days),
        n_observations=50,
        params={"centers": {"spo2": center}, "scales": {"spo2": 1.0}, "threshold": 3.5},
    )


def test_the_newest_model_is_used_and_built_once(conn: psycopg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    add_patients(conn, ["p1", "p2", "p3"])
    store_model(conn, "p1", 1, center=96.0)
    store_model(conn, "p1", 2, center=95.0)
    store_model(conn, "p3", 1, feature_version=FEATURE_VERSION + 1)  # built by other code: unusable
    trainer = ModelTrainer(RulesConfig())
    with caplog.at_level(logging.WARNING, logger="alerts.models_store"):
        first = trainer.load(conn, ["p1", "p2", "p3"])
        again = trainer.load(conn, ["p1", "p2", "p3"])
    assert set(first) == {"p1"}
    model = first["p1"]
    assert isinstance(model, RobustZModel)
    assert model.centers == {"spo2": 95.0}
    assert again["p1"] is model  # kept, not rebuilt
    assert sum("p3" in r.getMessage() for r in caplog.records) == 1  # and the unusable one said once
    store_model(conn, "p1", 3, center=94.0)  # retrained (by this worker or another)
    newer = trainer.load(conn, ["p1"])["p1"]
    assert isinstance(newer, RobustZModel)
    assert newer.centers == {"spo2": 94.0}

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from alerts.anomaly.detector import evaluate_anomaly
from alerts.anomaly.features import FEATURE_VERSION, SCALE_FLOOR, FeatureLog
from alerts.anomaly.methods import RobustZModel, eligible_features, fit_model, load_model, train_model
from alerts.config import AnomalyConfig
from alerts.errors import ModelError
from alerts.history import History
from alerts.model import Kind, Obs, Severity
from tests.alerts.helpers import T0, config

DAY = timedelta(days=1)


def patient(days: int, hr: float = 62.0, spo2: float = 97.0, seed: int = 1) -> History:
    rng = np.random.default_rng(seed)
    obs = []
    for d in range(days):
        for hour in (7, 19):
            t = T0 + d * DAY + timedelta(hours=hour)
            obs.append(Obs(t, "heart_rate", round(float(rng.normal(hr, 4)))))
            obs.append(Obs(t, "spo2", round(float(rng.normal(spo2, 0.8)))))
    return History(obs)


def test_no_model_before_the_minimum_history_and_the_guard_days_are_left_out() -> None:
    cfg = AnomalyConfig(min_days=14, guard_days=7)
    assert train_model(FeatureLog.from_history(patient(20)), T0 + 20 * DAY, cfg) is None  # 13 days usable
    model = train_model(FeatureLog.from_history(patient(22)), T0 + 22 * DAY, cfg)
    assert model is not None
    assert model.features == {"heart_rate", "spo2"}
    assert model.trained_through == T0 + 22 * DAY


def test_robust_z_centres_on_the_patients_own_median_with_a_floored_spread() -> None:
    model = train_model(FeatureLog.from_history(patient(30)), T0 + 30 * DAY, AnomalyConfig())
    assert isinstance(model, RobustZModel)
    assert abs(model.centers["heart_rate"] - 62) < 2
    assert model.scales["spo2"] >= SCALE_FLOOR["spo2"]
    (dev,) = model.assess({"heart_rate": 62 + 6 * model.scales["heart_rate"]})
    assert dev.abnormal
    assert dev.z == pytest.approx(6, abs=0.01)


def test_direction_matters_a_high_spo2_is_no_deterioration() -> None:
    model = train_model(FeatureLog.from_history(patient(30)), T0 + 30 * DAY, AnomalyConfig())
    assert model is not None
    high, low = model.assess({"spo2": 101}), model.assess({"spo2": 90})
    assert not high[0].abnormal
    assert low[0].abnormal


def test_a_rise_normal_for_the_population_is_abnormal_for_this_patient() -> None:
    h = patient(40, hr=58)
    model = train_model(FeatureLog.from_history(h), T0 + 40 * DAY, AnomalyConfig())
    assert model is not None
    t = T0 + 40 * DAY + timedelta(hours=7)
    for k in range(3):
        h.add(Obs(t + timedelta(hours=k), "heart_rate", 84.0))  # 84/min: nothing for NEWS2
    (c,) = evaluate_anomaly(h, t + timedelta(hours=2), {"heart_rate"}, model, config()).candidates
    assert (c.kind, c.rule, c.metric, c.severity) == (Kind.ANOMALY, "anomaly:heart_rate", "heart_rate", Severity.MEDIUM)
    (feature,) = c.detail["features"]
    assert feature["feature"] == "heart_rate"
    assert feature["value"] == 84.0
    assert feature["z"] > 4
    assert feature["deviation"] == pytest.approx(84 - feature["baseline_median"], abs=0.01)
    assert len(c.evidence) == 3


def test_a_normal_level_clears_and_a_single_artefact_is_ignored() -> None:
    h = patient(40)
    model = train_model(FeatureLog.from_history(h), T0 + 40 * DAY, AnomalyConfig())
    assert model is not None
    t = T0 + 40 * DAY + timedelta(hours=7)
    h.add(Obs(t, "heart_rate", 140.0))
    out = evaluate_anomaly(h, t, {"heart_rate"}, model, config())
    assert out.candidates == ()
    assert out.clear == {"anomaly:heart_rate"}


def test_parameters_round_trip_and_versions_are_checked() -> None:
    model = train_model(FeatureLog.from_history(patient(30)), T0 + 30 * DAY, AnomalyConfig(method="quantile"))
    assert model is not None
    again = load_model(
        model.method,
        model.params(),
        feature_version=FEATURE_VERSION,
        trained_through=model.trained_through,
        n_observations=model.n_observations,
    )
    assert again.assess({"heart_rate": 95}) == model.assess({"heart_rate": 95})
    with pytest.raises(ModelError):
        load_model("robust_z", {"centers": {}}, feature_version=FEATURE_VERSION, trained_through=T0, n_observations=0)
    with pytest.raises(ModelError):
        load_model(model.method, model.params(), feature_version=99, trained_through=T0, n_observations=0)


def test_isolation_forest_is_evaluated_but_not_persisted() -> None:
    log = FeatureLog.from_history(patient(30))
    columns = log.window(T0, T0 + 30 * DAY)
    assert eligible_features(columns, 14) == ["heart_rate", "spo2"]
    model = fit_model("isolation_forest", columns, trained_through=T0 + 30 * DAY, min_days=14, z=4, margin=1)
    assert model is not None
    assert any(d.abnormal for d in model.assess({"heart_rate": 130, "spo2": 86}))
    with pytest.raises(ModelError):
        model.params()

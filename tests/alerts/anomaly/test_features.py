from __future__ import annotations

from datetime import timedelta

import numpy as np

from alerts.anomaly.features import FeatureLog, current_features, level
from alerts.history import History
from alerts.model import Obs
from tests.alerts.helpers import T0, at, history


def test_level_is_the_median_of_the_last_three_readings_within_72_hours() -> None:
    h = history(("heart_rate", [(0, 60), (10, 140), (20, 62)]))  # one artefact among three
    f = level(h, "heart_rate", at(20))
    assert f is not None
    assert f.value == 62
    assert [o.value for o in f.evidence] == [60, 140, 62]
    assert level(h, "heart_rate", at(73)) is None  # the first reading is older than 72 h
    assert level(history(("heart_rate", [(0, 60), (1, 61)])), "heart_rate", at(1)) is None


def test_current_features_only_for_the_metrics_asked_and_known() -> None:
    h = history(("spo2", [(0, 97), (1, 96), (2, 97)]), ("bmi", [(0, 25), (1, 25), (2, 25)]))
    assert set(current_features(h, at(2))) == {"spo2"}
    assert current_features(h, at(2), frozenset({"heart_rate"})) == {}


def test_the_batch_log_equals_the_streaming_log() -> None:
    rng = np.random.default_rng(3)
    obs = []
    t = T0
    for _ in range(400):
        t += timedelta(hours=float(rng.uniform(0.1, 30)))
        for metric in rng.choice(["heart_rate", "spo2", "body_weight"], size=int(rng.integers(1, 3)), replace=False):
            obs.append(Obs(t, str(metric), float(rng.normal(70, 5))))
    streamed = FeatureLog()
    h = History()
    for when in sorted({o.time for o in obs}):
        group = [o for o in obs if o.time == when]
        for o in group:
            h.add(o)
        streamed.record(h, when, frozenset(o.metric for o in group))
    batch = FeatureLog.from_history(History(obs))
    end = t + timedelta(days=1)
    a, b = streamed.window(T0, end), batch.window(T0, end)
    assert a.keys() == b.keys()
    for metric in a:
        np.testing.assert_allclose(a[metric][0], b[metric][0])
        np.testing.assert_allclose(a[metric][1], b[metric][1])

"""The anomaly rule's hysteresis (issue 14): a level sitting just under the line neither clears nor
re-opens the alert; only a level ``clear_margin_z`` below the line clears it."""

from __future__ import annotations

from datetime import timedelta

from alerts.anomaly.detector import evaluate_anomaly
from alerts.anomaly.methods import RobustZModel
from alerts.config import RulesConfig
from alerts.history import History
from alerts.model import Obs
from tests.alerts.helpers import T0, config

MODEL = RobustZModel({"heart_rate": 60.0}, {"heart_rate": 3.0}, 4.0, T0, 100)


def judge(level: float):
    """Three readings at ``level`` (the feature is their median) judged by a model of 60 +- 3 /min."""
    h = History(Obs(T0 + timedelta(hours=i), "heart_rate", level) for i in range(3))
    return evaluate_anomaly(h, T0 + timedelta(hours=2), ["heart_rate"], MODEL, config())


def test_above_the_line_fires_just_below_it_holds_well_below_it_clears() -> None:
    assert [c.rule for c in judge(73.0).candidates] == ["anomaly:heart_rate"]  # z 4.3
    held = judge(70.0)  # z 3.3: under the line, within the 1.0 margin
    assert (held.candidates, held.clear) == ((), frozenset())
    cleared = judge(68.0)  # z 2.7
    assert (cleared.candidates, cleared.clear) == ((), {"anomaly:heart_rate"})


def test_the_margin_is_a_setting() -> None:
    no_margin = config(rules=RulesConfig(anomaly={"clear_margin_z": 0.0}))
    h = History(Obs(T0 + timedelta(hours=i), "heart_rate", 70.0) for i in range(3))
    assert evaluate_anomaly(h, T0 + timedelta(hours=2), ["heart_rate"], MODEL, no_margin).clear == {
        "anomaly:heart_rate"
    }

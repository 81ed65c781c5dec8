"""Which rules run when: on new readings, and on the schedule. Pure; shared by engine and replay.

``evaluate_readings`` runs when a patient has new readings at time ``at`` (readings with the same
time are evaluated together): the threshold bands of the metrics that arrived, NEWS2 when a NEWS2
parameter arrived, the weight and blood-pressure trends when those arrived, and the anomaly model
for the arrived metrics. ``evaluate_schedule`` runs as time passes: missing data, devices, agents.

``READING_LOOKBACK`` bounds how far back any reading-triggered rule looks, so the engine loads
exactly that window and gets the answers the replay gets from its full history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from alerts.anomaly.detector import AnomalyModel, evaluate_anomaly
from alerts.anomaly.features import FEATURE_LOOKBACK
from alerts.config import PatientConfig, RulesConfig
from alerts.history import History
from alerts.model import Outcome, merge_outcomes
from alerts.rules.missing_data import (
    DeviceState,
    MissingDataStatus,
    Pause,
    evaluate_devices,
    missing_data_status,
)
from alerts.rules.news2 import PARAMETERS as NEWS2_PARAMETERS
from alerts.rules.news2 import evaluate_news2
from alerts.rules.threshold import evaluate_thresholds
from alerts.rules.trend import CONFIRM_SPAN as WEIGHT_CONFIRM_SPAN
from alerts.rules.trend import PLAUSIBILITY_SPAN, evaluate_bp_goal, evaluate_weight_gain

__all__ = [
    "evaluate_readings",
    "evaluate_schedule",
    "reading_lookback",
    "schedule_lookback",
]

_BP: Final = frozenset({"bp_systolic", "bp_diastolic"})
_NEWS2: Final = frozenset(NEWS2_PARAMETERS)


def reading_lookback(config: PatientConfig) -> timedelta:
    """The history a reading-triggered evaluation of this patient may look at."""
    trend = config.trend
    bands = max((b.within_h for bs in config.bands.values() for b in bs), default=24.0)
    return max(
        timedelta(days=max(trend.weight_gain_kg) + trend.weight_baseline_days)
        + WEIGHT_CONFIRM_SPAN
        + PLAUSIBILITY_SPAN,
        timedelta(days=max(trend.bp_window_days, trend.bp_max_window_days)),
        timedelta(hours=max(bands, config.news2.window_h)),
        FEATURE_LOOKBACK,
    ) + timedelta(hours=1)


def schedule_lookback(rules: RulesConfig) -> timedelta:
    """The history the scheduled (missing-data) evaluation needs: the lookback before a silence."""
    return timedelta(days=3 * rules.missing_data.lookback_days)


def evaluate_readings(
    history: History,
    at: datetime,
    metrics: Iterable[str],
    config: PatientConfig,
    model: AnomalyModel | None = None,
) -> Outcome:
    arrived = frozenset(metrics)
    outcomes = [evaluate_thresholds(history, at, arrived, config)]
    if not arrived.isdisjoint(_NEWS2):
        outcomes.append(evaluate_news2(history, at, config))
    if "body_weight" in arrived:
        outcomes.append(evaluate_weight_gain(history, at, config))
    if not arrived.isdisjoint(_BP):
        outcomes.append(evaluate_bp_goal(history, at, config))
    if model is not None and config.anomaly:
        outcomes.append(evaluate_anomaly(history, at, arrived, model, config))
    return merge_outcomes(outcomes)


def evaluate_schedule(
    history: History,
    at: datetime,
    config: PatientConfig,
    devices: Iterable[DeviceState] = (),
    pauses: Sequence[Pause] = (),
) -> tuple[Outcome, MissingDataStatus]:
    status = missing_data_status(history, at, config, pauses)
    return merge_outcomes([status.outcome, evaluate_devices(devices, at, config, pauses)]), status

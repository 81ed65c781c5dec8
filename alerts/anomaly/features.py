"""Anomaly features: a robust *level* per metric, the median of the patient's last three readings.

The median of three readings within 72 hours ignores a single artefact (a cold-finger SpO2 dip, a
cuff reading taken while talking) yet follows a real change within a day or two. The training frame
holds the same feature computed at every reading time of the training period, so the model's
baseline and the value it judges are the same quantity (:class:`FeatureLog`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Final, Literal

import numpy as np
import pandas as pd

from alerts.history import History
from alerts.model import Obs

__all__ = [
    "ANOMALY_METRICS",
    "FEATURE_LOOKBACK",
    "FEATURE_VERSION",
    "LEVEL_READINGS",
    "SCALE_FLOOR",
    "FeatureLog",
    "FeatureValue",
    "current_features",
    "level",
]

FEATURE_VERSION: Final = 1
LEVEL_READINGS: Final = 3
FEATURE_LOOKBACK: Final = timedelta(hours=72)

Direction = Literal["low", "high", "both"]
# Which deviations matter: a rising SpO2 or a falling temperature is no deterioration.
ANOMALY_METRICS: Final[dict[str, Direction]] = {
    "heart_rate": "both",
    "spo2": "low",
    "bp_systolic": "both",
    "bp_diastolic": "both",
    "body_temperature": "high",
    "body_weight": "both",
    "glucose": "both",
    "respiratory_rate": "both",
}
# The smallest spread a baseline may claim (measuring resolution and day-to-day physiology): a
# patient whose SpO2 read 97 % twenty times running is not "abnormal" at 96 %.
SCALE_FLOOR: Final[dict[str, float]] = {
    "heart_rate": 3.0,
    "spo2": 0.8,
    "bp_systolic": 5.0,
    "bp_diastolic": 3.5,
    "body_temperature": 0.15,
    "body_weight": 0.4,
    "glucose": 10.0,
    "respiratory_rate": 1.2,
}


@dataclass(frozen=True, slots=True)
class FeatureValue:
    name: str
    value: float
    evidence: tuple[Obs, ...]


def level(history: History, metric: str, at: datetime) -> FeatureValue | None:
    """The metric's level as of ``at``; None without three readings in the last 72 hours."""
    times, values, obs = history.series(metric)
    i = bisect_right(times, at)
    # The last LEVEL_READINGS readings, those not after ``at - FEATURE_LOOKBACK`` left out.
    j = bisect_right(times, at - FEATURE_LOOKBACK, max(0, i - LEVEL_READINGS), i)
    if i - j < LEVEL_READINGS:
        return None
    return FeatureValue(metric, float(median(values[j:i])), tuple(obs[j:i]))


def current_features(history: History, at: datetime, metrics: frozenset[str] | None = None) -> dict[str, FeatureValue]:
    chosen = ANOMALY_METRICS.keys() if metrics is None else metrics & ANOMALY_METRICS.keys()
    out = {}
    for m in sorted(chosen):
        f = level(history, m, at)
        if f is not None:
            out[m] = f
    return out


class FeatureLog:
    """The level of each metric at each of its reading times: the training data of a baseline.

    Grown one evaluation at a time by the replay (:meth:`append`), or computed in one pass from a
    history loaded from the database (:meth:`from_history`, pandas); both give the same log for
    readings in time order (a test holds them to it). Times are POSIX seconds.
    """

    def __init__(self) -> None:
        self._t: dict[str, list[float]] = {}
        self._v: dict[str, list[float]] = {}

    def append(self, metric: str, at: datetime, value: float) -> None:
        ts, vs = self._t.setdefault(metric, []), self._v.setdefault(metric, [])
        t = at.timestamp()
        if ts and ts[-1] == t:
            vs[-1] = value
        elif not ts or t > ts[-1]:
            ts.append(t)
            vs.append(value)
        else:  # out of order: keep the log sorted
            i = bisect_left(ts, t)
            if i < len(ts) and ts[i] == t:
                vs[i] = value
            else:
                ts.insert(i, t)
                vs.insert(i, value)

    def record(self, history: History, at: datetime, metrics: frozenset[str]) -> None:
        """Log the level of ``metrics`` as of ``at`` (call after adding the readings at ``at``)."""
        for m in metrics & ANOMALY_METRICS.keys():
            f = level(history, m, at)
            if f is not None:
                self.append(m, at, f.value)

    @classmethod
    def from_history(cls, history: History) -> FeatureLog:
        """The log of every level computable from ``history`` (rolling medians with pandas)."""
        log = cls()
        for metric in ANOMALY_METRICS:
            obs = history.all(metric)
            if len(obs) < LEVEL_READINGS:
                continue
            times = pd.DatetimeIndex([o.time for o in obs])
            frame = pd.DataFrame({"value": [o.value for o in obs]}, index=times)
            frame["level"] = frame["value"].rolling(LEVEL_READINGS).median()
            frame["span"] = times.to_series().diff(LEVEL_READINGS - 1).to_numpy()
            frame = frame[frame["span"] < FEATURE_LOOKBACK]
            frame = frame[~frame.index.duplicated(keep="last")]
            log._t[metric] = [float(t) for t in frame.index.as_unit("us").asi8 / 1e6]
            log._v[metric] = [float(v) for v in frame["level"]]
        return log

    def window(self, start: datetime, end: datetime) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per metric, ``(times, levels)`` with ``start <= time < end``."""
        a, b = start.timestamp(), end.timestamp()
        out = {}
        for m, ts in self._t.items():
            i, j = bisect_left(ts, a), bisect_left(ts, b)
            if j > i:
                out[m] = (np.asarray(ts[i:j]), np.asarray(self._v[m][i:j]))
        return out

    def prune(self, before: datetime) -> None:
        cut_at = before.timestamp()
        for m, ts in self._t.items():
            cut = bisect_left(ts, cut_at)
            del ts[:cut]
            del self._v[m][:cut]

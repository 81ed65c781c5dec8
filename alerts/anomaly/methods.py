"""Baseline methods: learn what is normal for one patient, then say how far a value is from it.

``robust_z`` (deployed default)
    scikit-learn's ``RobustScaler`` over the training frame: centre = median, spread = IQR / 1.349
    (the standard deviation of a normal distribution with that IQR), floored per metric. A value is
    abnormal when its robust z-score reaches the threshold in the metric's direction.
``quantile``
    the 1st-99th percentile band of the training values widened by ``margin`` inter-quantile
    widths; abnormal outside it.
``isolation_forest``
    a scikit-learn ``IsolationForest`` over the joint feature vector (daily medians); abnormal when
    the score falls below the training scores' 1st percentile. Multivariate, but not persisted: the
    only faithful serialisation is a pickle, and loading pickles from the database would let whoever
    can write that table run code. It is kept for the measured comparison (docs/alerts.md).

Every method answers with :class:`Deviation` per feature — value, baseline centre and spread, the
signed z-score — so that an alert can say which features were abnormal and by how much. Parametric
models round-trip through :meth:`params` / :func:`load_model` (stored as JSON, versioned).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from alerts.anomaly.features import ANOMALY_METRICS, FEATURE_VERSION, SCALE_FLOOR, FeatureLog
from alerts.config import AnomalyConfig
from alerts.errors import ModelError

__all__ = [
    "METHODS",
    "BaselineModel",
    "Deviation",
    "IsolationForestModel",
    "QuantileModel",
    "RobustZModel",
    "directional",
    "eligible_features",
    "fit_model",
    "load_model",
    "train_model",
]

_IQR_TO_SD: Final = 1.349
_DAY_S: Final = 86400.0

# Training data: per feature, (POSIX times, values) — see FeatureLog.window.
Columns = Mapping[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Deviation:
    feature: str
    value: float
    center: float
    scale: float
    z: float  # signed: (value - center) / scale
    abnormal: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "value": round(self.value, 2),
            "baseline_median": round(self.center, 2),
            "baseline_spread": round(self.scale, 3),
            "z": round(self.z, 2),
            "deviation": round(self.value - self.center, 2),
        }


class BaselineModel(Protocol):
    """A trained per-patient baseline."""

    @property
    def method(self) -> str: ...

    @property
    def trained_through(self) -> datetime: ...

    @property
    def n_observations(self) -> int: ...

    @property
    def features(self) -> frozenset[str]: ...

    def assess(self, values: Mapping[str, float]) -> list[Deviation]:
        """A deviation for every feature of ``values`` the model knows."""
        ...

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters (raise :class:`ModelError` when not persistable)."""
        ...


def directional(feature: str, z: float, threshold: float) -> bool:
    """Whether ``z`` reaches ``threshold`` in the feature's clinical direction."""
    return _directional(feature, z, threshold)


def _directional(feature: str, z: float, threshold: float) -> bool:
    direction = ANOMALY_METRICS.get(feature, "both")
    if direction == "low":
        return z <= -threshold
    if direction == "high":
        return z >= threshold
    return abs(z) >= threshold


def eligible_features(columns: Columns, min_days: int) -> list[str]:
    """Features with values on at least ``min_days`` distinct days: the model speaks for those only."""
    return sorted(m for m, (ts, _) in columns.items() if np.unique(np.floor(ts / _DAY_S)).size >= min_days)


def _matrix(columns: Columns, names: list[str]) -> np.ndarray:
    """Columns side by side, padded with NaN (per-feature statistics ignore NaN; rows are not times)."""
    n = max(len(columns[m][1]) for m in names)
    out = np.full((n, len(names)), np.nan)
    for i, m in enumerate(names):
        values = columns[m][1]
        out[: len(values), i] = values
    return out


@dataclass(frozen=True, slots=True)
class RobustZModel:
    centers: dict[str, float]
    scales: dict[str, float]
    threshold: float
    trained_through: datetime
    n_observations: int
    method: str = "robust_z"

    @property
    def features(self) -> frozenset[str]:
        return frozenset(self.centers)

    @classmethod
    def fit(cls, columns: Columns, *, trained_through: datetime, threshold: float) -> RobustZModel:
        from sklearn.preprocessing import RobustScaler  # scikit-learn loads in seconds: on first use

        names = sorted(columns)
        scaler = RobustScaler(quantile_range=(25.0, 75.0)).fit(_matrix(columns, names))
        centers, scales = {}, {}
        for i, name in enumerate(names):
            centers[name] = float(scaler.center_[i])
            scales[name] = max(float(scaler.scale_[i]) / _IQR_TO_SD, SCALE_FLOOR.get(name, 1e-6))
        return cls(centers, scales, threshold, trained_through, sum(len(v) for _, v in columns.values()))

    def assess(self, values: Mapping[str, float]) -> list[Deviation]:
        out = []
        for name, v in sorted(values.items()):
            if name in self.centers:
                z = (v - self.centers[name]) / self.scales[name]
                out.append(
                    Deviation(name, v, self.centers[name], self.scales[name], z, _directional(name, z, self.threshold))
                )
        return out

    def params(self) -> dict[str, Any]:
        return {"centers": self.centers, "scales": self.scales, "threshold": self.threshold}


@dataclass(frozen=True, slots=True)
class QuantileModel:
    lows: dict[str, float]
    highs: dict[str, float]
    centers: dict[str, float]
    scales: dict[str, float]
    trained_through: datetime
    n_observations: int
    margin: float = 1.0
    method: str = "quantile"

    @property
    def features(self) -> frozenset[str]:
        return frozenset(self.centers)

    @classmethod
    def fit(cls, columns: Columns, *, trained_through: datetime, margin: float) -> QuantileModel:
        lows, highs, centers, scales = {}, {}, {}, {}
        for name, (_, values) in sorted(columns.items()):
            q01, q25, q50, q75, q99 = (float(x) for x in np.quantile(values, [0.01, 0.25, 0.5, 0.75, 0.99]))
            width = max(q99 - q01, 2 * SCALE_FLOOR.get(name, 1e-6))
            lows[name], highs[name] = q01 - margin * width, q99 + margin * width
            centers[name] = q50
            scales[name] = max((q75 - q25) / _IQR_TO_SD, SCALE_FLOOR.get(name, 1e-6))
        n = sum(len(v) for _, v in columns.values())
        return cls(lows, highs, centers, scales, trained_through, n, margin)

    def assess(self, values: Mapping[str, float]) -> list[Deviation]:
        out = []
        for name, v in sorted(values.items()):
            if name not in self.centers:
                continue
            direction = ANOMALY_METRICS.get(name, "both")
            low = v < self.lows[name] and direction != "high"
            high = v > self.highs[name] and direction != "low"
            z = (v - self.centers[name]) / self.scales[name]
            out.append(Deviation(name, v, self.centers[name], self.scales[name], z, low or high))
        return out

    def params(self) -> dict[str, Any]:
        return {
            "lows": self.lows,
            "highs": self.highs,
            "centers": self.centers,
            "scales": self.scales,
            "margin": self.margin,
        }


@dataclass(slots=True)
class IsolationForestModel:
    forest: Any  # sklearn.ensemble.IsolationForest
    columns: list[str]
    cutoff: float
    explain: RobustZModel
    trained_through: datetime
    n_observations: int
    method: str = "isolation_forest"
    _fill: dict[str, float] = field(default_factory=dict)

    @property
    def features(self) -> frozenset[str]:
        return frozenset(self.columns)

    @classmethod
    def fit(cls, columns: Columns, *, trained_through: datetime, threshold: float) -> IsolationForestModel:
        from sklearn.ensemble import IsolationForest  # evaluated in bench/ only

        frame = pd.DataFrame(
            {m: pd.Series(v, index=pd.to_datetime(ts, unit="s", utc=True)) for m, (ts, v) in columns.items()}
        )
        daily = frame.groupby(frame.index.floor("D")).median().ffill().bfill()
        forest = IsolationForest(n_estimators=50, random_state=0).fit(daily.to_numpy())
        cutoff = float(np.quantile(forest.decision_function(daily.to_numpy()), 0.01))
        explain = RobustZModel.fit(columns, trained_through=trained_through, threshold=threshold / 2)
        cols = [str(c) for c in daily.columns]
        model = cls(forest, cols, cutoff, explain, trained_through, explain.n_observations)
        model._fill = {c: explain.centers[c] for c in cols}
        return model

    def assess(self, values: Mapping[str, float]) -> list[Deviation]:
        if not any(c in values for c in self.columns):
            return []
        vector = np.array([[values.get(c, self._fill[c]) for c in self.columns]])
        abnormal = float(self.forest.decision_function(vector)[0]) < self.cutoff
        devs = self.explain.assess({k: v for k, v in values.items() if k in self.columns})
        return [Deviation(d.feature, d.value, d.center, d.scale, d.z, abnormal and d.abnormal) for d in devs]

    def params(self) -> dict[str, Any]:
        raise ModelError("isolation forest models are not persisted (see alerts.anomaly.methods)")


METHODS: Final = ("robust_z", "quantile", "isolation_forest")


def fit_model(
    method: str, columns: Columns, *, trained_through: datetime, min_days: int, z: float, margin: float
) -> BaselineModel | None:
    """Train ``method`` on the eligible features; None when no feature has enough history."""
    names = eligible_features(columns, min_days)
    if not names:
        return None
    data = {m: columns[m] for m in names}
    if method == "robust_z":
        return RobustZModel.fit(data, trained_through=trained_through, threshold=z)
    if method == "quantile":
        return QuantileModel.fit(data, trained_through=trained_through, margin=margin)
    if method == "isolation_forest":
        return IsolationForestModel.fit(data, trained_through=trained_through, threshold=z)
    raise ModelError(f"unknown anomaly method {method!r}")


def _floats(doc: Mapping[str, Any], key: str) -> dict[str, float]:
    raw = doc.get(key)
    if not isinstance(raw, Mapping):
        raise ModelError(f"model parameters lack {key}")
    out = {str(k): float(v) for k, v in raw.items()}
    if not all(math.isfinite(v) for v in out.values()):
        raise ModelError(f"model parameter {key} is not finite")
    return out


def load_model(
    method: str, params: Mapping[str, Any], *, feature_version: int, trained_through: datetime, n_observations: int
) -> BaselineModel:
    """Rebuild a stored model; raise :class:`ModelError` for another feature version or bad parameters."""
    if feature_version != FEATURE_VERSION:
        raise ModelError(f"model built on feature version {feature_version}, this code computes {FEATURE_VERSION}")
    try:
        if method == "robust_z":
            return RobustZModel(
                _floats(params, "centers"),
                _floats(params, "scales"),
                float(params["threshold"]),
                trained_through,
                n_observations,
            )
        if method == "quantile":
            return QuantileModel(
                _floats(params, "lows"),
                _floats(params, "highs"),
                _floats(params, "centers"),
                _floats(params, "scales"),
                trained_through,
                n_observations,
                float(params["margin"]),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"bad {method} model parameters") from exc
    raise ModelError(f"cannot load anomaly method {method!r}")


def train_model(
    log: FeatureLog, until: datetime, config: AnomalyConfig, method: str | None = None
) -> BaselineModel | None:
    """Train on the levels logged before ``until`` minus the guard days: the model never sees ``until``."""
    end = until - timedelta(days=config.guard_days)
    columns = log.window(end - timedelta(days=config.train_days), end)
    return fit_model(
        method or config.method,
        columns,
        trained_through=until,
        min_days=config.min_days,
        z=config.z,
        margin=config.quantile_margin,
    )

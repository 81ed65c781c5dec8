"""Small builders for alert tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.config import PatientConfig, RulesConfig
from alerts.history import History
from alerts.model import Obs

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(hours: float = 0.0, *, days: float = 0.0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def history(*series: tuple[str, Iterable[tuple[float, float]]]) -> History:
    """``history(("spo2", [(hours, value), ...]), ...)``"""
    return History(Obs(at(h), metric, float(v)) for metric, points in series for h, v in points)


def config(settings: dict[str, Any] | None = None, rules: RulesConfig | None = None) -> PatientConfig:
    return PatientConfig.resolve(rules or RulesConfig(), settings)

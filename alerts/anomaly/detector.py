"""Anomaly candidates: the patient's current feature values judged against their own baseline.

Evaluated for the metrics that just arrived and that the model speaks for (enough history). An
abnormal feature raises ``anomaly:<metric>`` at ``medium`` severity; the alert lists every abnormal
feature with its value, the baseline median and spread, and the z-score. A normal value clears it;
with ``robust_z`` only a value ``clear_margin_z`` below the line does (hysteresis), so a level
sitting on the line does not open, auto-resolve and open again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from alerts.anomaly.features import current_features
from alerts.anomaly.methods import BaselineModel, RobustZModel, directional
from alerts.config import PatientConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Outcome, Severity

__all__ = ["RULE_PREFIX", "AnomalyModel", "evaluate_anomaly", "rule_key"]

RULE_PREFIX: Final = "anomaly"
AnomalyModel = BaselineModel


def rule_key(metric: str) -> str:
    return f"{RULE_PREFIX}:{metric}"


def evaluate_anomaly(
    history: History, at: datetime, arrived: Iterable[str], model: BaselineModel, config: PatientConfig
) -> Outcome:
    targets = frozenset(arrived) & model.features
    targets = frozenset(m for m in targets if config.enabled(rule_key(m)))
    if not targets:
        return Outcome()
    # A multivariate model judges the whole vector; univariate ones only need the arrived metrics.
    wanted = None if model.method == "isolation_forest" else targets
    features = current_features(history, at, wanted)
    deviations = model.assess({name: f.value for name, f in features.items()})
    abnormal = [d for d in deviations if d.abnormal]
    candidates: list[Candidate] = []
    clear: set[str] = set()
    for d in deviations:
        if d.feature not in targets:
            continue
        if not d.abnormal:
            # Hysteresis: a level just under the line neither clears nor re-opens the alert.
            margin = config.anomaly_clear_margin_z
            if not (isinstance(model, RobustZModel) and directional(d.feature, d.z, model.threshold - margin)):
                clear.add(rule_key(d.feature))
            continue
        candidates.append(
            Candidate(
                rule=rule_key(d.feature),
                kind=Kind.ANOMALY,
                metric=d.feature,
                severity=Severity.MEDIUM,
                summary=f"{d.feature} level {d.value:g} vs usual {d.center:g} for this patient (z {d.z:+.1f})",
                evidence=features[d.feature].evidence,
                detail={
                    "method": model.method,
                    "trained_through": model.trained_through.isoformat(),
                    "features": [x.to_json() for x in sorted(abnormal, key=lambda x: -abs(x.z))],
                },
            )
        )
    return Outcome(tuple(candidates), frozenset(clear))

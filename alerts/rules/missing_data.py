"""Missing-data rules, evaluated on a schedule (nothing arrives to trigger them).

``missing_data`` — a patient who usually measures has stopped. A metric is *expected* when the
patient's settings list it (``expected_metrics``) or, by default, when the patient measured it on at
least ``min_days`` of the ``lookback_days`` before their last reading of it (and that last reading
is less than twice the lookback ago: a metric silent for a month is no longer "usual"). It is
*missing* when the silence since the last reading exceeds ``after_h`` hours or ``cadence_factor``
typical gaps of that patient, whichever is longer. One alert per patient lists every missing metric.

``missing_data:device:<id>`` / ``missing_data:agent:<id>`` — a device or edge agent assigned to the
patient not seen for ``device_not_seen_h`` / ``agent_not_seen_h``, or a device battery at or below
``low_battery_pct`` (from the agent status messages).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Final, Literal

from alerts.config import MissingDataConfig, PatientConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Obs, Outcome, Severity

__all__ = [
    "RULE",
    "DeviceState",
    "MissingDataStatus",
    "evaluate_devices",
    "evaluate_missing_data",
    "missing_data_status",
    "silence_limit",
]

RULE: Final = "missing_data"
_SESSION: Final = timedelta(hours=1)  # readings closer than this are one measuring session


@dataclass(frozen=True, slots=True)
class DeviceState:
    kind: Literal["device", "agent"]
    id: str
    last_seen: datetime | None
    battery_pct: int | None = None


def silence_limit(readings: Sequence[Obs], cfg: MissingDataConfig) -> timedelta:
    """The longest silence that is still normal for this patient and metric."""
    sessions: list[datetime] = []
    for o in readings:
        if not sessions or o.time - sessions[-1] >= _SESSION:
            sessions.append(o.time)
    gaps = [b - a for a, b in pairwise(sessions)]
    typical = sorted(gaps)[len(gaps) // 2] if gaps else timedelta(0)  # the (upper) median gap
    return max(timedelta(hours=cfg.after_h), typical * cfg.cadence_factor)


def _expected(history: History, metric: str, last: Obs, cfg: MissingDataConfig, explicit: bool) -> list[Obs] | None:
    lookback = timedelta(days=cfg.lookback_days)
    recent = history.window(metric, last.time - lookback, last.time)
    if explicit:
        return recent
    days = {o.time.date() for o in recent}
    return recent if len(days) >= cfg.min_days else None


@dataclass(frozen=True, slots=True)
class MissingDataStatus:
    outcome: Outcome
    # When the answer can next change without a new reading (the earliest silence limit still ahead).
    next_due: datetime | None


def missing_data_status(history: History, at: datetime, config: PatientConfig) -> MissingDataStatus:
    if not config.enabled(RULE):
        return MissingDataStatus(Outcome(), None)
    cfg = config.missing_data
    explicit = config.expected_metrics is not None
    metrics: Iterable[str] = config.expected_metrics if config.expected_metrics is not None else history.metrics()
    missing: list[dict[str, Any]] = []
    evidence: list[Obs] = []
    expected_any = False
    next_due: datetime | None = None
    for metric in sorted(metrics):
        last = history.latest(metric, at)
        if last is None:
            continue
        if not explicit and at - last.time > timedelta(days=2 * cfg.lookback_days):
            continue
        recent = _expected(history, metric, last, cfg, explicit)
        if recent is None:
            continue
        expected_any = True
        limit = silence_limit(recent, cfg)
        silent = at - last.time
        if silent <= limit:
            due = last.time + limit + timedelta(seconds=1)
            next_due = due if next_due is None else min(next_due, due)
            continue
        missing.append(
            {
                "metric": metric,
                "last_reading_at": last.time.isoformat(),
                "silent_h": round(silent / timedelta(hours=1), 1),
                "limit_h": round(limit / timedelta(hours=1), 1),
            }
        )
        evidence.append(last)
    if not missing:
        return MissingDataStatus(Outcome(clear=frozenset({RULE})) if expected_any else Outcome(), next_due)
    names = [m["metric"] for m in missing]
    candidate = Candidate(
        rule=RULE,
        kind=Kind.MISSING_DATA,
        metric=names[0] if len(names) == 1 else None,
        severity=Severity.LOW,
        summary="no recent readings: " + ", ".join(names),
        evidence=tuple(evidence),
        detail={"missing": missing},
    )
    return MissingDataStatus(Outcome((candidate,)), next_due)


def evaluate_missing_data(history: History, at: datetime, config: PatientConfig) -> Outcome:
    return missing_data_status(history, at, config).outcome


def evaluate_devices(devices: Iterable[DeviceState], at: datetime, config: PatientConfig) -> Outcome:
    cfg = config.missing_data
    candidates: list[Candidate] = []
    clear: set[str] = set()
    for d in devices:
        key = f"{RULE}:{d.kind}:{d.id}"
        if not config.enabled(key):
            continue
        limit = timedelta(hours=cfg.device_not_seen_h if d.kind == "device" else cfg.agent_not_seen_h)
        problems: dict[str, Any] = {}
        if d.last_seen is not None and at - d.last_seen > limit:
            problems["not_seen_h"] = round((at - d.last_seen) / timedelta(hours=1), 1)
            problems["last_seen_at"] = d.last_seen.isoformat()
        if d.battery_pct is not None and d.battery_pct <= cfg.low_battery_pct:
            problems["battery_pct"] = d.battery_pct
        if not problems:
            clear.add(key)
            continue
        what = " and ".join(
            (["not seen"] if "not_seen_h" in problems else []) + (["battery low"] if "battery_pct" in problems else [])
        )
        candidates.append(
            Candidate(
                rule=key,
                kind=Kind.MISSING_DATA,
                metric=None,
                severity=Severity.LOW,
                summary=f"{d.kind} {what}",
                evidence=(),
                detail={"kind": d.kind, "id": d.id, **problems},
            )
        )
    return Outcome(tuple(candidates), frozenset(clear))

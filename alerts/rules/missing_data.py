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

Pauses (``pauses``: ``(start, end)`` pairs a clinician recorded — a hospital admission, travel): while
one is in force every missing-data rule of the patient is clear (nothing is expected, an open alert
resolves), and after it the silence counts from its end, not from the last reading before it.
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
    "Pause",
    "evaluate_devices",
    "evaluate_missing_data",
    "missing_data_status",
    "paused_at",
    "silence_limit",
]

RULE: Final = "missing_data"
_SESSION: Final = timedelta(hours=1)  # readings closer than this are one measuring session
_JUST_AFTER: Final = timedelta(seconds=1)

# A monitoring pause: (start, end), end exclusive.
Pause = tuple[datetime, datetime]


def paused_at(pauses: Iterable[Pause], at: datetime) -> Pause | None:
    """The pause in force at ``at`` (the one ending last when several overlap), or None."""
    covering = [p for p in pauses if p[0] <= at < p[1]]
    return max(covering, key=lambda p: p[1]) if covering else None


def _silent_since(last: datetime, pauses: Iterable[Pause], at: datetime) -> datetime:
    """Silence counts from the last reading, or from the end of a pause that ended after it."""
    return max([last, *(end for _, end in pauses if last < end <= at)])


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


def missing_data_status(
    history: History, at: datetime, config: PatientConfig, pauses: Sequence[Pause] = ()
) -> MissingDataStatus:
    if not config.enabled(RULE):
        return MissingDataStatus(Outcome(), None)
    pause = paused_at(pauses, at)
    if pause is not None:
        return MissingDataStatus(Outcome(clear=frozenset({RULE})), pause[1] + _JUST_AFTER)
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
        since = _silent_since(last.time, pauses, at)
        if not explicit and at - since > timedelta(days=2 * cfg.lookback_days):
            continue
        recent = _expected(history, metric, last, cfg, explicit)
        if recent is None:
            continue
        expected_any = True
        limit = silence_limit(recent, cfg)
        silent = at - since
        if silent <= limit:
            due = since + limit + _JUST_AFTER
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


def evaluate_missing_data(
    history: History, at: datetime, config: PatientConfig, pauses: Sequence[Pause] = ()
) -> Outcome:
    return missing_data_status(history, at, config, pauses).outcome


def evaluate_devices(
    devices: Iterable[DeviceState], at: datetime, config: PatientConfig, pauses: Sequence[Pause] = ()
) -> Outcome:
    cfg = config.missing_data
    candidates: list[Candidate] = []
    clear: set[str] = set()
    paused = paused_at(pauses, at) is not None
    for d in devices:
        key = f"{RULE}:{d.kind}:{d.id}"
        if not config.enabled(key):
            continue
        if paused:
            clear.add(key)
            continue
        limit = timedelta(hours=cfg.device_not_seen_h if d.kind == "device" else cfg.agent_not_seen_h)
        problems: dict[str, Any] = {}
        if d.last_seen is not None and at - _silent_since(d.last_seen, pauses, at) > limit:
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
